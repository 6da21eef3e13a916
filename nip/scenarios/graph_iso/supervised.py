"""The supervised view of graph isomorphism: pairs classified by an agent's body alone.

Solo training and pretraining (:mod:`nip.trainers.supervised`) ask a body what it makes of a
pair before any message is exchanged (round 0: empty message history, no message) and put a
solo head on its representation.
"""

import torch
from torch import Tensor, nn

from nip.scenarios.graph_iso.agents import CombinedPolicy, agent_config
from nip.scenarios.graph_iso.config import GraphIsoScenarioConfig
from nip.scenarios.graph_iso.dataset import GraphPairDataset
from nip.utils.nn import mlp, orthogonal_init_
from nip.utils.seeding import derive_seed


class SoloHead(nn.Module):
    """Graph-level MLP from both graph representations to reject/accept logits."""

    def __init__(self, d_representation: int, d_hidden: int, activation: str):
        super().__init__()
        self.net = mlp(2 * d_representation, d_hidden, 2, 2, activation)
        orthogonal_init_(self)

    def forward(self, graph_repr: Tensor) -> Tensor:
        """``[*B, 2, d] -> [*B, 2]``."""
        return self.net(graph_repr.flatten(-2))


class GraphIsoSupervisedView:
    """A dataset of pairs as the agents' bodies see it at round 0, with its labels.

    Parameters
    ----------
    policy : CombinedPolicy
        The agents whose bodies classify the pairs.
    dataset : GraphPairDataset
        The pairs (moved to ``device`` once).
    scenario_cfg : GraphIsoScenarioConfig
        The agents' architecture (for the solo heads).
    observation_stats : dict, optional
        ``{"x" | "message": {"loc", "scale"}}``: the RL trainer's observation normalisation,
        so that pretrained bodies see the inputs they will see in RL; without it the bodies
        see plain zeros.
    device : torch.device
        Where the data and the networks live.
    """

    def __init__(
        self,
        policy: CombinedPolicy,
        dataset: GraphPairDataset,
        scenario_cfg: GraphIsoScenarioConfig,
        observation_stats: dict[str, dict[str, Tensor]] | None = None,
        device: torch.device | str = "cpu",
    ):
        self.policy = policy
        self.scenario_cfg = scenario_cfg
        self.device = torch.device(device)
        self.adjacency = dataset.adjacency.to(self.device)
        self.node_mask = dataset.node_mask.to(self.device)
        self.y = dataset.y.to(self.device)
        # Breakdowns of accuracy: by WL score (-1 for isomorphic pairs).
        self.strata = {"wl_score": dataset.wl_score}
        handler = policy.protocol_handler
        shape = (
            handler.max_message_rounds,
            handler.num_channels,
            policy.message_size,
            2,
            policy.max_nodes,
        )
        stats = observation_stats or {}
        # One normalised all-zero observation, broadcast to each batch.
        self._x = self._normalised_zeros(stats.get("x"), shape)
        self._message = self._normalised_zeros(stats.get("message"), shape[1:])

    def _normalised_zeros(self, stats: dict[str, Tensor] | None, shape: tuple[int, ...]) -> Tensor:
        zeros = torch.zeros(shape, device=self.device)
        if stats is None:
            return zeros
        return (zeros - stats["loc"].to(self.device)) / stats["scale"].to(self.device)

    def __len__(self) -> int:
        return len(self.y)

    def labels(self, idx: Tensor) -> Tensor:
        """long ``[b]``: 1 for isomorphic pairs, 0 otherwise."""
        return self.y[idx]

    def solo_head(self, agent_name: str, seed: int) -> SoloHead:
        """A freshly (seeded) initialised solo head for an agent's body."""
        cfg = agent_config(self.policy.protocol_handler, self.scenario_cfg, agent_name)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, agent_name, "solo_head"))
            head = SoloHead(self.scenario_cfg.d_representation, cfg.d_decider, cfg.activation)
        return head.to(self.device)

    def representation(self, agent_index: int, idx: Tensor) -> Tensor:
        """``[b, 2, d]``: agent ``agent_index``'s graph representations of the pairs ``idx``."""
        b = len(idx)
        graph_repr, _ = self.policy._run_body(
            agent_index,
            self._x.expand(b, *self._x.shape),
            self._message.expand(b, *self._message.shape),
            self.adjacency[idx],
            self.node_mask[idx],
            torch.zeros(b, dtype=torch.long, device=self.device),
            need_nodes=False,
        )
        return graph_repr

    def body_parameter_groups(self, agent_name: str, lr: float, use_factors: bool) -> list[dict]:
        """Optimizer groups of an agent's policy body.

        With ``use_factors`` the GNN learns at ``lr * body_lr_factor.actor *
        gnn_lr_factor.actor`` and the rest of the body at ``lr * body_lr_factor.actor`` (as
        in RL, without the agent's overall factor); otherwise everything at ``lr``.
        """
        body = self.policy.bodies[agent_name]
        gnn = list(body.gnn.parameters())
        gnn_ids = {id(q) for q in gnn}
        rest = [q for q in body.parameters() if id(q) not in gnn_ids]
        if not use_factors:
            return [{"params": gnn + rest, "lr": lr, "name": f"{agent_name}.body"}]
        cfg = agent_config(self.policy.protocol_handler, self.scenario_cfg, agent_name)
        body_lr = lr * cfg.body_lr_factor.actor
        return [
            {"params": gnn, "lr": body_lr * cfg.gnn_lr_factor.actor, "name": f"{agent_name}.gnn"},
            {"params": rest, "lr": body_lr, "name": f"{agent_name}.body"},
        ]
