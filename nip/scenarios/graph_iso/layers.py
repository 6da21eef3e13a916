"""The graph layers of the GI agents: a dense GIN over padded adjacency matrices, and the
attention bias that lets a transformer see both graphs of a pair and their structure.

Shape letters as in :mod:`nip.scenarios.graph_iso.agents`.
"""

import torch
from torch import Tensor, nn

from nip.utils.nn import NEG_INF, activation_module, mlp


class DenseGIN(nn.Module):
    """A stack of dense GIN layers on a batch of graphs.

    ``Linear(d_in -> d_gnn)``, then per layer ``h = MLP((A + I) @ act(h))`` (GIN with eps = 0;
    MLP = Linear-act-Linear), and finally ``h * node_mask``.

    The reference masks after every layer. Here the adjacency must have no edges at
    non-existent nodes (the caller masks it), so padding rows never mix into existing nodes
    and one final mask gives the same result with fewer ops.

    Parameters
    ----------
    d_in, d_gnn, d_gin_mlp : int
        Input width, GNN width and the hidden width of each GIN MLP.
    num_layers : int
        Number of GIN layers.
    activation : str
        Activation name.
    """

    def __init__(self, d_in: int, d_gnn: int, d_gin_mlp: int, num_layers: int, activation: str):
        super().__init__()
        self.input = nn.Linear(d_in, d_gnn)
        self.act = activation_module(activation)
        self.layers = nn.ModuleList(
            mlp(d_gnn, d_gin_mlp, d_gnn, 2, activation) for _ in range(num_layers)
        )

    def forward(self, h: Tensor, adj_hat: Tensor, node_mask: Tensor) -> Tensor:
        """Run the GNN.

        Parameters
        ----------
        h : Tensor
            float ``[G, N, S, d_in]``: ``G`` graphs (batch and graph dims folded together),
            ``S`` feature streams that share the weights but are propagated independently.
        adj_hat : Tensor
            float ``[G, N, N]``: adjacency plus identity, with no edges at non-existent nodes.
        node_mask : Tensor
            float ``[G, N, 1, 1]``.

        Returns
        -------
        Tensor
            float ``[G, N, S, d_gnn]``, zero at non-existent nodes.
        """
        g, n, s, _ = h.shape
        h = self.input(h)
        for layer in self.layers:
            # One bmm aggregates every stream: streams and features share the last dim.
            agg = torch.bmm(adj_hat, self.act(h).reshape(g, n, -1)).view(g, n, s, -1)
            h = layer(agg)
        return h * node_mask


def graph_pair_attention_allowed(max_nodes: int, device: torch.device | None = None) -> Tensor:
    """Structural attention mask of the token sequence ``[pooled0, pooled1, A nodes, B nodes]``.

    Nodes may not attend to nodes of their own graph (themselves included); everything else
    is allowed. Padding (non-existent nodes) is handled separately, per sample.

    Returns
    -------
    Tensor
        bool ``[2 + 2N, 2 + 2N]`` (query, key): True where attention is allowed.
    """
    n = max_nodes
    graph_of = torch.cat([torch.full((2,), -1), torch.arange(2).repeat_interleave(n)]).to(device)
    same_graph = (graph_of[:, None] == graph_of[None, :]) & (graph_of[:, None] >= 0)
    return ~same_graph


def graph_pair_attention_bias(structural: Tensor, node_mask: Tensor) -> Tensor:
    """Additive attention bias combining the structural mask and the per-sample padding.

    Parameters
    ----------
    structural : Tensor
        bool ``[L, L]`` from :func:`graph_pair_attention_allowed`, ``L = 2 + 2N``.
    node_mask : Tensor
        bool ``[B, 2, N]``.

    Returns
    -------
    Tensor
        float ``[B, 1, L, L]``: 0 where allowed, ``NEG_INF`` where forbidden (the size-1 dim
        broadcasts over heads). Pooled tokens always exist, so no query row is fully masked.
    """
    b = node_mask.shape[0]
    key_exists = torch.cat([node_mask.new_ones(b, 2), node_mask.reshape(b, -1)], dim=1)
    allowed = structural & key_exists[:, None, :]
    bias = torch.zeros(allowed.shape, dtype=torch.float32, device=node_mask.device)
    return bias.masked_fill_(~allowed, NEG_INF).unsqueeze(1)
