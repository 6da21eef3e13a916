"""The graph-isomorphism environment: dialogues about pairs of graphs.

Messages point at nodes: ``2N`` items, the ``N`` (padded) nodes of graph A, then graph B's.
Everything else (rounds, turns, rewards, episode bookkeeping) is the shared
:class:`~nip.environment.ProtocolEnvironment`.
"""

import torch
from torch import Tensor
from torchrl.data import Categorical, TensorSpec

from nip.environment import ProtocolEnvironment
from nip.scenarios.graph_iso.dataset import GraphPairDataset


class GraphIsoEnvironment(ProtocolEnvironment):
    """A batched TorchRL environment for interaction protocols over graph pairs.

    Observations of the pair: ``adjacency`` bool ``[B, 2, N, N]`` and ``node_mask`` bool
    ``[B, 2, N]``; messages are ``[B, C, P, 2, N]``. See
    :class:`~nip.environment.ProtocolEnvironment` for the rest.
    """

    @property
    def item_shape(self) -> tuple[int, ...]:
        """``(2, N)``: the nodes of both graphs."""
        return (2, self.dataset.max_nodes)

    @property
    def max_nodes(self) -> int:
        """``N``, the padded number of nodes per graph."""
        return self.dataset.max_nodes

    @classmethod
    def example_tensors(cls, dataset: GraphPairDataset) -> dict[str, Tensor]:
        """Both graphs' adjacency matrices and node masks."""
        return {"adjacency": dataset.adjacency, "node_mask": dataset.node_mask}

    def example_specs(self, num_envs: int) -> dict[str, TensorSpec]:
        """bool ``[B, 2, N, N]`` and ``[B, 2, N]``."""
        n, dev = self.dataset.max_nodes, self.device
        return {
            "adjacency": Categorical(2, shape=(num_envs, 2, n, n), dtype=torch.bool, device=dev),
            "node_mask": Categorical(2, shape=(num_envs, 2, n), dtype=torch.bool, device=dev),
        }
