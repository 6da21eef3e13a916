"""What ``nip.probe`` asks of GI messages beyond the label: do the first exchange's nodes
correspond under an isomorphism, and how connected is the node the prover pointed at."""

import networkx as nx
import numpy as np
import torch
from torch import Tensor

from nip.episodes import SILENT


def first_choice(pointed: Tensor, agent: int) -> tuple[Tensor, Tensor]:
    """The first item ``agent`` pointed at in each episode (first round, channel, position).

    Parameters
    ----------
    pointed : Tensor
        long ``[E, T, A, C, P]`` (see :func:`nip.evaluation.record_episodes`).

    Returns
    -------
    item : Tensor
        long ``[E]`` (0 where the agent never spoke).
    spoke : Tensor
        bool ``[E]``.
    """
    choices = pointed[:, :, agent].flatten(1)  # [E, T*C*P], in round order
    spoke = choices != SILENT
    first = spoke.long().argmax(1)
    item = choices.gather(1, first[:, None])[:, 0]
    return torch.where(spoke.any(1), item, 0), spoke.any(1)


def _graph(adjacency: np.ndarray, num_nodes: int, marked: int) -> nx.Graph:
    graph = nx.Graph()
    graph.add_nodes_from(range(num_nodes), marked=False)
    graph.nodes[marked]["marked"] = True
    rows, cols = np.nonzero(np.triu(adjacency[:num_nodes, :num_nodes], 1))
    graph.add_edges_from(zip(rows.tolist(), cols.tolist(), strict=True))
    return graph


def corresponds(adjacency: np.ndarray, node_mask: np.ndarray, u: int, v: int) -> bool:
    """Whether an isomorphism of graph A onto graph B maps node ``u`` of A to node ``v`` of B
    (exact: VF2 with the two nodes marked)."""
    sizes = node_mask.sum(-1)
    a = _graph(adjacency[0], int(sizes[0]), u)
    b = _graph(adjacency[1], int(sizes[1]), v)
    same_mark = nx.algorithms.isomorphism.categorical_node_match("marked", False)
    return nx.is_isomorphic(a, b, node_match=same_mark)


def gi_probe_targets(
    y: Tensor, pointed: Tensor, examples: dict[str, Tensor], verifier: int, prover: int
) -> dict[str, tuple[Tensor, Tensor]]:
    """``matched`` and ``prover_node_high_degree`` of each episode, with where they are defined.

    ``matched`` (isomorphic pairs whose first verifier node and first prover node lie in
    different graphs): some isomorphism maps one onto the other. ``prover_node_high_degree``
    (episodes where the prover spoke): the degree of the prover's first node is at least the
    median of those degrees over the episodes.
    """
    adjacency, node_mask = examples["adjacency"].numpy(), examples["node_mask"].numpy()
    num_nodes = node_mask.shape[-1]
    v_item, v_spoke = first_choice(pointed, verifier)
    p_item, p_spoke = first_choice(pointed, prover)
    v_graph, p_graph = v_item // num_nodes, p_item // num_nodes
    matched = torch.zeros_like(y)
    defined = (y == 1) & v_spoke & p_spoke & (v_graph != p_graph)
    for e in defined.nonzero()[:, 0].tolist():  # exact isomorphism tests, one per episode
        u, v = int(v_item[e] % num_nodes), int(p_item[e] % num_nodes)
        if v_graph[e] == 1:  # the verifier pointed into B: map B's node onto A's
            u, v = v, u
        matched[e] = int(corresponds(adjacency[e], node_mask[e], u, v))
    rows = torch.arange(len(y))
    degree = torch.as_tensor(adjacency).sum(-1)[rows, p_graph, p_item % num_nodes]
    median = degree[p_spoke].median() if p_spoke.any() else 0
    return {
        "matched": (matched, defined),
        "prover_node_high_degree": ((degree >= median).long(), p_spoke),
    }
