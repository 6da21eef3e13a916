"""The supervised view of graph isomorphism: pairs classified by an agent's body alone.

Solo training and pretraining (:mod:`nip.trainers.supervised`) ask a body what it makes of a
pair before any message is exchanged (round 0: empty message history, no message) and put a
solo head on its representation.
"""

import torch
from torch import Tensor, nn

from nip.agents import SupervisedView
from nip.scenarios.graph_iso.agents import CombinedPolicy, agent_config, split_gnn
from nip.scenarios.graph_iso.config import GraphIsoScenarioConfig
from nip.scenarios.graph_iso.dataset import GraphPairDataset
from nip.utils.nn import mlp, orthogonal_init_


class SoloHead(nn.Module):
    """Graph-level MLP from both graph representations to reject/accept logits."""

    def __init__(self, d_representation: int, d_hidden: int, activation: str):
        super().__init__()
        self.net = mlp(2 * d_representation, d_hidden, 2, 2, activation)
        orthogonal_init_(self)

    def forward(self, graph_repr: Tensor) -> Tensor:
        """``[*B, 2, d] -> [*B, 2]``."""
        return self.net(graph_repr.flatten(-2))


def supervised_view(
    policy: CombinedPolicy,
    dataset: GraphPairDataset,
    scenario_cfg: GraphIsoScenarioConfig,
    observation_stats: dict[str, dict[str, Tensor]] | None = None,
    device: torch.device | str = "cpu",
) -> SupervisedView:
    """The pairs as the bodies see them at round 0: graph representations ``[b, 2, d]``
    into a :class:`SoloHead`; accuracy broken down by WL score; the GNN as a body part."""
    configs = {
        name: agent_config(policy.protocol_handler, scenario_cfg, name)
        for name in policy.agent_names
    }
    return SupervisedView(
        policy,
        (dataset.adjacency, dataset.node_mask),
        dataset.y,
        {"wl_score": dataset.wl_score},
        ("non_isomorphic", "isomorphic"),
        configs,
        lambda cfg: SoloHead(scenario_cfg.d_representation, cfg.d_decider, cfg.activation),
        split_gnn,
        observation_stats,
        device,
    )
