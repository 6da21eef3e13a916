"""Generation of graph-isomorphism datasets from Erdos-Renyi graphs.

The rules are those of the original research code:

* Every (size ``n``, edge probability ``p``) configuration gets
  ``per = num_pairs * prop_non_isomorphic / num_configs`` non-isomorphic pairs, split into
  quotas of ``floor(per * non_iso_prop_score_1)`` pairs with WL score 1,
  ``floor(per * non_iso_prop_score_2)`` with score 2 and the remaining
  ``floor(per) - q1 - q2`` with a score above 2. Both graphs of such a pair are independent
  ER(n, p) graphs (strict upper triangle sampled, then symmetrised); pairs that WL cannot
  distinguish (score -1) never count as non-isomorphic.
* ``floor(num_pairs * (1 - prop_non_isomorphic) * iso_prop_from_non_iso)`` isomorphic pairs
  copy a random member of a random non-isomorphic pair.
* The remaining pairs are isomorphic copies of fresh ER graphs, split evenly over the
  configurations, the last one taking the rest.
* Both members of every isomorphic pair are independently node-permuted within their true
  size (padding nodes stay last) and get score -1 without running WL.
* Graphs are padded to ``max(graph_sizes)`` nodes and the pairs are shuffled.

Sampling the score quotas
-------------------------
The original code samples independent pairs and rejects those outside the quota's score
class. With the default configuration that is hopeless for scores above 2: for ``n = 11``
and ``p`` in {0.4, 0.6}, only about one independent pair in ten million has such a score, so
175 such pairs per configuration would need over a billion candidate pairs.

We draw the same distribution (a pair of independent ER graphs conditioned on its score
class) from a *pool* of independent graphs instead, where every pair of distinct pool graphs
is a candidate: a pool of ``M`` graphs offers ``M * (M - 1) / 2`` candidates for the price of
``M`` WL colourings. A pair's class is decided by per-graph WL signatures: it is in the class
iff the two graphs' signatures agree at a *grouping* level and differ at a *separating* level
(score 1: levels 0 and 1, level 0 being "same size"; score 2: levels 1 and 2; above 2:
levels 2 and ``wl_iterations``). The pool is grouped by the grouping signature, each group
is randomly matched into disjoint pairs, and a matched pair that qualifies is kept with a
probability compensating for its group's size (a given pair of a group of size ``s`` is
matched with probability ``1 / (s - 1)`` or ``1 / s``). Every qualifying pair of the pool is
therefore equally likely to be kept, no graph is used twice, and for the score-1 class (a
single group) this is exactly the original independent-pair rejection sampling. Rounds with
fresh pools, sized from the expected yield of the last one, continue until the quota is
full. All randomness comes from one ``torch.Generator``: a seed determines the dataset.
"""

import math
from itertools import product

import torch
from torch import Tensor

from nip.errors import NipConfigError
from nip.scenarios.graph_iso.config import GraphIsoScenarioConfig
from nip.scenarios.graph_iso.dataset import GraphPairDataset
from nip.scenarios.graph_iso.wl import wl_scores, wl_signatures
from nip.utils.seeding import make_generator

__all__ = ["generate_pairs", "sample_erdos_renyi"]

# Largest pool of graphs drawn at once.
_MAX_POOL_SIZE = 1 << 20
# Give up on a quota after drawing this many graphs for it.
_MAX_GRAPHS_PER_QUOTA = 1 << 24
# Largest growth factor of the pool between rounds.
_MAX_POOL_GROWTH = 8.0
# 0x9E3779B97F4A7C15 as a signed int64 (an odd multiplier for combining keys).
_GOLDEN = -7046029254386353131


def sample_erdos_renyi(
    num_graphs: int, num_nodes: int, edge_probability: float, generator: torch.Generator
) -> Tensor:
    """Sample Erdos-Renyi graphs.

    Parameters
    ----------
    num_graphs, num_nodes : int
        How many graphs, and their number of nodes.
    edge_probability : float
        Probability of each edge (an edge where a uniform draw is below it).
    generator : torch.Generator
        Source of randomness.

    Returns
    -------
    Tensor
        bool ``[num_graphs, num_nodes, num_nodes]``: symmetric adjacency, no self loops.
    """
    rows, cols = torch.triu_indices(num_nodes, num_nodes, offset=1)
    edges = torch.rand(num_graphs, rows.numel(), generator=generator) < edge_probability
    # Write each upper-triangle entry and its mirror image into the flattened matrices.
    flat_index = torch.cat([rows * num_nodes + cols, cols * num_nodes + rows])
    adjacency = torch.zeros(num_graphs, num_nodes * num_nodes, dtype=torch.bool)
    adjacency.index_copy_(1, flat_index, torch.cat([edges, edges], dim=1))
    return adjacency.view(num_graphs, num_nodes, num_nodes)


def _validate(params: GraphIsoScenarioConfig, num_pairs: int) -> None:
    def fail(problem: str) -> NipConfigError:
        return NipConfigError(f"scenario (graph_iso) data generation: {problem}")

    if num_pairs < 0:
        raise fail(f"the number of pairs must be non-negative, got {num_pairs}")
    if len(params.graph_sizes) == 0 or len(params.edge_probabilities) == 0:
        raise fail("graph_sizes and edge_probabilities must not be empty")
    if any(int(size) < 1 for size in params.graph_sizes):
        raise fail(f"graph_sizes must be positive, got {list(params.graph_sizes)}")
    if any(not 0.0 <= float(p) <= 1.0 for p in params.edge_probabilities):
        raise fail(f"edge_probabilities must lie in [0, 1], got {list(params.edge_probabilities)}")
    if params.wl_iterations < 1:
        raise fail(f"wl_iterations must be at least 1, got {params.wl_iterations}")
    for name in ("prop_non_isomorphic", "iso_prop_from_non_iso"):
        if not 0.0 <= float(getattr(params, name)) <= 1.0:
            raise fail(f"{name} must lie in [0, 1], got {getattr(params, name)}")
    score_1, score_2 = float(params.non_iso_prop_score_1), float(params.non_iso_prop_score_2)
    if score_1 < 0 or score_2 < 0 or score_1 + score_2 > 1:
        raise fail(
            "non_iso_prop_score_1 and non_iso_prop_score_2 must be non-negative with sum at "
            f"most 1, got {score_1} and {score_2}"
        )


def _non_isomorphic_quotas(params: GraphIsoScenarioConfig, num_pairs: int) -> tuple[int, ...]:
    """Per-configuration numbers of non-isomorphic pairs with score 1, 2 and above 2."""
    num_configs = len(params.graph_sizes) * len(params.edge_probabilities)
    # Same arithmetic as the original code, so that the counts match it exactly.
    per_config = num_pairs * float(params.prop_non_isomorphic) / num_configs
    score_1 = math.floor(per_config * float(params.non_iso_prop_score_1))
    score_2 = math.floor(per_config * float(params.non_iso_prop_score_2))
    return score_1, score_2, math.floor(per_config) - score_1 - score_2


def _signature_levels(score_class: int, num_iterations: int) -> tuple[int, int]:
    """(grouping level, separating level) of WL signatures for a score class (3 = above 2).

    A pair is in the class iff its signatures agree at the grouping level (level 0: all
    graphs agree) and differ at the separating level.
    """
    return {1: (0, 1), 2: (1, 2), 3: (2, num_iterations)}[score_class]


def _pool_keys(pool: Tensor, group_level: int, separate_level: int) -> tuple[Tensor, Tensor]:
    """int64 ``[graphs]`` grouping and separating signatures of a pool of equal-size graphs."""
    num_graphs, num_nodes = pool.shape[:2]
    node_mask = torch.ones(num_graphs, num_nodes, dtype=torch.bool)
    separate = torch.zeros(num_graphs, dtype=torch.long)
    if group_level == 0:
        group = torch.zeros(num_graphs, dtype=torch.long)
        separate = wl_signatures(pool, node_mask, separate_level)[:, -1]
        return group, separate
    group = wl_signatures(pool, node_mask, group_level)[:, -1]
    # Graphs alone in their group have no partner: skip their (costlier) deeper levels.
    _, inverse, counts = torch.unique(group, return_inverse=True, return_counts=True)
    shared = (counts[inverse] > 1).nonzero().squeeze(1)
    if shared.numel() > 0:
        separate[shared] = wl_signatures(pool[shared], node_mask[shared], separate_level)[:, -1]
    return group, separate


def _segments(new_segment: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per element of a sorted sequence with run-start flags: (run id, run start, run length)."""
    starts = new_segment.nonzero().squeeze(1)
    lengths = torch.diff(starts, append=torch.tensor([new_segment.numel()]))
    segment = new_segment.long().cumsum(0) - 1
    return segment, starts[segment], lengths[segment]


def _match_qualifying_pairs(
    group: Tensor, separate: Tensor, generator: torch.Generator
) -> tuple[Tensor, Tensor, float]:
    """Disjoint pool pairs with equal ``group`` and different ``separate`` keys.

    Each group is randomly matched into pairs; a matched pair that qualifies is kept with a
    probability that compensates for its group's size, so that every qualifying pair of the
    pool is kept with the same probability ``1 / scale`` (``scale`` being the largest
    compensation factor). Kept pairs are thus uniform over the qualifying pairs, and no graph
    is used twice.

    Parameters
    ----------
    group, separate : Tensor
        int64 ``[graphs]`` keys of the pool's graphs.

    Returns
    -------
    first, second : Tensor
        int64 ``[k]`` pool indices of the kept pairs (ordered by group key).
    expected : float
        The expected number of kept pairs (0 if no pair qualifies).
    """
    empty = torch.zeros(0, dtype=torch.long)
    num_graphs = group.numel()
    # A random order within each group: a random permutation, then a stable sort by group.
    order = torch.randperm(num_graphs, generator=generator)
    order = order[torch.argsort(group[order], stable=True)]
    group_sorted, separate_sorted = group[order], separate[order]
    new_group = torch.ones(num_graphs, dtype=torch.bool)
    new_group[1:] = group_sorted[1:] != group_sorted[:-1]
    group_id, group_start, group_size = _segments(new_group)
    num_groups = int(group_id[-1]) + 1 if num_graphs > 0 else 0
    # Groups holding two different separating keys have qualifying pairs.
    low = torch.full((num_groups,), torch.iinfo(torch.long).max)
    high = torch.full((num_groups,), torch.iinfo(torch.long).min)
    low.scatter_reduce_(0, group_id, separate_sorted, reduce="amin")
    high.scatter_reduce_(0, group_id, separate_sorted, reduce="amax")
    mixed = (low != high)[group_id]
    if not bool(mixed.any()):
        return empty, empty, 0.0
    # A given pair of a group of size s is matched below with probability 1 / f(s), where
    # f(s) = s - 1 (s even) or s (s odd); keeping it with probability f(s) / scale makes
    # every qualifying pair equally likely to be kept.
    mixed_size = group_size[new_group & mixed]
    scale = int(torch.where(mixed_size % 2 == 0, mixed_size - 1, mixed_size).max())
    mixed_index = mixed.nonzero().squeeze(1)
    # One key per (group, separating key); a hash collision would only perturb ``expected``.
    subgroup_key = separate_sorted[mixed_index] ^ (group_id[mixed_index] * _GOLDEN)
    _, subgroup_size = torch.unique(subgroup_key, return_counts=True)
    num_qualifying = int((mixed_size * (mixed_size - 1) // 2).sum()) - int(
        (subgroup_size * (subgroup_size - 1) // 2).sum()
    )
    # Random matching: ranks 2t and 2t + 1 within a group form a pair.
    rank = torch.arange(num_graphs) - group_start
    first = ((rank % 2 == 0) & (rank + 1 < group_size) & mixed).nonzero().squeeze(1)
    second = first + 1
    size = group_size[first]
    keep_probability = torch.where(size % 2 == 0, size - 1, size).double() / scale
    keep = (separate_sorted[first] != separate_sorted[second]) & (
        torch.rand(first.numel(), generator=generator, dtype=torch.float64) < keep_probability
    )
    return order[first[keep]], order[second[keep]], num_qualifying / scale


def _sample_score_class(
    num_nodes: int,
    edge_probability: float,
    score_class: int,
    count: int,
    num_iterations: int,
    generator: torch.Generator,
) -> Tensor:
    """``count`` pairs of independent ER graphs whose WL score is in ``score_class``.

    Returns
    -------
    Tensor
        bool ``[count, 2, num_nodes, num_nodes]``.
    """
    group_level, separate_level = _signature_levels(score_class, num_iterations)
    pool_size = {1: 2 * count + 64, 2: 4096, 3: 16384}[score_class]
    pairs: list[Tensor] = []
    remaining, drawn = count, 0
    while remaining > 0:
        pool_size = min(pool_size, _MAX_POOL_SIZE)
        pool = sample_erdos_renyi(pool_size, num_nodes, edge_probability, generator)
        drawn += pool_size
        group, separate = _pool_keys(pool, group_level, separate_level)
        first, second, expected = _match_qualifying_pairs(group, separate, generator)
        if first.numel() > remaining:  # a uniformly random subset of the kept pairs
            chosen = torch.randperm(first.numel(), generator=generator)[:remaining]
            first, second = first[chosen], second[chosen]
        pairs.append(torch.stack([pool[first], pool[second]], dim=1))
        remaining -= first.numel()
        if remaining == 0:
            break
        hopeless = expected == 0 and pool_size == _MAX_POOL_SIZE
        if hopeless or drawn >= _MAX_GRAPHS_PER_QUOTA:
            label = {1: "1", 2: "2", 3: "above 2"}[score_class]
            raise NipConfigError(
                f"scenario (graph_iso) data generation: found only {count - remaining} of "
                f"{count} non-isomorphic pairs with WL score {label} among {drawn} ER("
                f"{num_nodes}, {edge_probability}) graphs; change graph_sizes, "
                "edge_probabilities, wl_iterations or the non_iso_prop_score_* proportions"
            )
        if expected == 0:
            growth = _MAX_POOL_GROWTH
        else:
            # The yield grows between linearly and quadratically with the pool size.
            growth = min(_MAX_POOL_GROWTH, max(1.0, 1.25 * (remaining / expected) ** (2 / 3)))
        pool_size = math.ceil(pool_size * growth)
    return torch.cat(pairs)


def _pad(adjacency: Tensor, num_nodes: int) -> Tensor:
    """Pad bool ``[..., n, n]`` with absent nodes to ``[..., num_nodes, num_nodes]``."""
    extra = num_nodes - adjacency.shape[-1]
    return torch.nn.functional.pad(adjacency, (0, extra, 0, extra))


def _permute_within_size(adjacency: Tensor, sizes: Tensor, generator: torch.Generator) -> Tensor:
    """Relabel the nodes of each graph by a random permutation of its first ``size`` nodes.

    Parameters
    ----------
    adjacency : Tensor
        bool ``[graphs, N, N]``.
    sizes : Tensor
        int64 ``[graphs]``.

    Returns
    -------
    Tensor
        bool ``[graphs, N, N]``; padding nodes keep their positions.
    """
    num_graphs, num_nodes = adjacency.shape[:2]
    node = torch.arange(num_nodes)
    keys = torch.rand(num_graphs, num_nodes, generator=generator)
    # Keys above 1 sort the padding nodes last, in their original order.
    keys = torch.where(node < sizes.unsqueeze(1), keys, 2.0 + node)
    permutation = torch.argsort(keys, dim=1, stable=True)
    rows = adjacency.gather(1, permutation.unsqueeze(2).expand(-1, -1, num_nodes))
    return rows.gather(2, permutation.unsqueeze(1).expand(-1, num_nodes, -1))


def generate_pairs(params: GraphIsoScenarioConfig, num_pairs: int, seed: int) -> GraphPairDataset:
    """Generate a graph-isomorphism dataset (rules in the module docstring).

    Parameters
    ----------
    params : GraphIsoScenarioConfig
        Uses ``graph_sizes``, ``edge_probabilities``, ``wl_iterations``,
        ``prop_non_isomorphic``, ``non_iso_prop_score_1``, ``non_iso_prop_score_2`` and
        ``iso_prop_from_non_iso``.
    num_pairs : int
        Number of pairs.
    seed : int
        Seed of the dedicated generator; the result is a function of ``params``,
        ``num_pairs`` and ``seed``.

    Returns
    -------
    GraphPairDataset
        ``num_pairs`` shuffled pairs padded to ``max(graph_sizes)`` nodes.

    Raises
    ------
    NipConfigError
        If the parameters are invalid or a score quota cannot be filled (for instance scores
        above 2 with ``wl_iterations < 3``, or edge probability 0 or 1).
    """
    _validate(params, num_pairs)
    sizes = [int(size) for size in params.graph_sizes]
    configs = list(product(sizes, [float(p) for p in params.edge_probabilities]))
    num_iterations = int(params.wl_iterations)
    max_nodes = max(sizes)
    generator = make_generator(seed)

    quotas = _non_isomorphic_quotas(params, num_pairs)
    for score_class, minimum in ((2, 2), (3, 3)):
        if quotas[score_class - 1] > 0 and num_iterations < minimum:
            raise NipConfigError(
                f"scenario (graph_iso) data generation: wl_iterations = {num_iterations} "
                f"cannot give the WL scores {'2' if score_class == 2 else 'above 2'} that "
                "non_iso_prop_score_* asks for"
            )

    # Step 1: non-isomorphic pairs, per configuration and score class.
    non_iso_parts: list[Tensor] = []
    non_iso_sizes: list[int] = []
    for num_nodes, edge_probability in configs:
        for score_class, count in enumerate(quotas, start=1):
            if count == 0:
                continue
            pairs = _sample_score_class(
                num_nodes, edge_probability, score_class, count, num_iterations, generator
            )
            non_iso_parts.append(_pad(pairs, max_nodes))
            non_iso_sizes += [num_nodes] * count
    non_iso = _cat_or_empty(non_iso_parts, (0, 2, max_nodes, max_nodes))
    non_iso_size = torch.tensor(non_iso_sizes, dtype=torch.long)
    non_iso_mask = _node_mask(non_iso_size, max_nodes)
    non_iso_score = wl_scores(
        non_iso[:, 0], non_iso[:, 1], non_iso_mask, non_iso_mask, num_iterations
    )
    expected_class = torch.repeat_interleave(
        torch.tensor([c for _ in configs for c in (1, 2, 3)]),
        torch.tensor([count for _ in configs for count in quotas]),
    )
    if not bool((non_iso_score.clamp(-1, 3) == expected_class).all()):
        raise RuntimeError("bug: a generated pair's WL score is outside its quota's class")

    # Step 2: isomorphic pairs copying a member of a non-isomorphic pair.
    num_from_non_iso = math.floor(
        num_pairs * (1 - float(params.prop_non_isomorphic)) * float(params.iso_prop_from_non_iso)
    )
    if non_iso.shape[0] == 0:
        num_from_non_iso = 0  # nothing to copy: these become fresh graphs (step 3)
    # (max(..., 1) only keeps randint valid when there is nothing to draw.)
    source_pair = torch.randint(max(non_iso.shape[0], 1), (num_from_non_iso,), generator=generator)
    source_member = torch.randint(2, (num_from_non_iso,), generator=generator)
    iso_graphs = [non_iso[source_pair, source_member]]
    iso_sizes = [non_iso_size[source_pair]]

    # Step 3: isomorphic pairs from fresh graphs, evenly over configurations.
    num_fresh = num_pairs - non_iso.shape[0] - num_from_non_iso
    per_config = num_fresh // len(configs)
    for index, (num_nodes, edge_probability) in enumerate(configs):
        count = (
            num_fresh - per_config * (len(configs) - 1) if index == len(configs) - 1 else per_config
        )
        graphs = sample_erdos_renyi(count, num_nodes, edge_probability, generator)
        iso_graphs.append(_pad(graphs, max_nodes))
        iso_sizes.append(torch.full((count,), num_nodes, dtype=torch.long))
    iso_graph = torch.cat(iso_graphs)
    iso_size = torch.cat(iso_sizes)
    num_iso = iso_graph.shape[0]
    permuted = _permute_within_size(
        torch.cat([iso_graph, iso_graph]), torch.cat([iso_size, iso_size]), generator
    )
    iso = torch.stack([permuted[:num_iso], permuted[num_iso:]], dim=1)

    adjacency = torch.cat([non_iso, iso])
    size = torch.cat([non_iso_size, iso_size])
    wl_score = torch.cat([non_iso_score, torch.full((num_iso,), -1, dtype=torch.long)])
    shuffle = torch.randperm(num_pairs, generator=generator)
    node_mask = _node_mask(size, max_nodes).unsqueeze(1).expand(-1, 2, -1)
    return GraphPairDataset(
        adjacency=adjacency[shuffle].contiguous(),
        node_mask=node_mask[shuffle].contiguous(),
        wl_score=wl_score[shuffle],
    )


def _node_mask(sizes: Tensor, num_nodes: int) -> Tensor:
    """bool ``[..., num_nodes]``: node ``i`` exists iff ``i < size``."""
    return torch.arange(num_nodes) < sizes.unsqueeze(-1)


def _cat_or_empty(parts: list[Tensor], empty_shape: tuple[int, ...]) -> Tensor:
    return torch.cat(parts) if parts else torch.zeros(empty_shape, dtype=torch.bool)
