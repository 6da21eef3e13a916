"""The joint action distribution of all agents, with off-turn actions masked out.

Every agent samples a node per (channel, position) and a decision at every step, because the
combined actor runs all agents at once. Only some of these actions reach the environment: an
agent's node choice counts only in channels where it is active this round, and only the
main verifier's decision counts, only in rounds where it may decide. The log-probability and
entropy of each agent therefore sum over the actions that count and nothing else, so the PPO
ratio and the entropy bonus of an agent never contain terms for actions that had no effect.
"""

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution


class AgentsActionDistribution(Distribution):
    """Independent categoricals over every agent's node choices and decision.

    Parameters
    ----------
    node_logits : Tensor
        float ``[*B, A, C, P, K]``: logits over the ``K = 2N`` nodes of both graphs.
    decision_logits : Tensor
        float ``[*B, A, 3]``: reject / accept / continue.
    node_active : Tensor
        bool ``[*B, A, C]``: the agent's node choice in that channel reaches the environment.
    decision_active : Tensor
        bool ``[*B, A]``: the agent's decision reaches the environment.
    mask_actions : bool
        Use the two masks (the default). ``False`` counts every sampled action, as the
        original code does (for comparisons).

    Notes
    -----
    Samples are packed as long ``[*B, A, C*P + 1]``: the node index per (channel, position),
    then the decision. ``log_prob`` and ``entropy`` return float ``[*B, A]``.
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(
        self,
        node_logits: Tensor,
        decision_logits: Tensor,
        node_active: Tensor,
        decision_active: Tensor,
        mask_actions: bool = True,
    ):
        if not mask_actions:
            node_active = torch.ones_like(node_active)
            decision_active = torch.ones_like(decision_active)
        self.node_logits = node_logits
        self.decision_logits = decision_logits
        self.node_log_probs = F.log_softmax(node_logits, dim=-1)
        self.decision_log_probs = F.log_softmax(decision_logits, dim=-1)
        self.node_weight = node_active.to(node_logits.dtype)[..., None]  # [*B, A, C, 1]
        self.decision_weight = decision_active.to(decision_logits.dtype)
        *batch, num_agents, channels, positions, _ = node_logits.shape
        self._num_node_actions = channels * positions
        super().__init__(
            batch_shape=torch.Size([*batch, num_agents]),
            event_shape=torch.Size([channels * positions + 1]),
            validate_args=False,
        )

    def _pack(self, nodes: Tensor, decision: Tensor) -> Tensor:
        return torch.cat([nodes.flatten(-2), decision[..., None]], dim=-1)

    @torch.no_grad()
    def sample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:  # noqa: D102
        shape = torch.Size(sample_shape)
        node_probs = self.node_log_probs.exp().expand(*shape, *self.node_log_probs.shape)
        decision_probs = self.decision_log_probs.exp().expand(
            *shape, *self.decision_log_probs.shape
        )
        try:
            nodes = torch.multinomial(node_probs.reshape(-1, node_probs.shape[-1]), 1)
            decision = torch.multinomial(decision_probs.reshape(-1, 3), 1)
        except RuntimeError as e:
            # Checked only when sampling fails, so the hot path pays nothing: a diverged
            # policy is reported as such instead of as multinomial's complaint.
            if not (node_probs.isfinite().all() and decision_probs.isfinite().all()):
                raise FloatingPointError("the policy's action probabilities are not finite") from e
            raise
        return self._pack(
            nodes.view(node_probs.shape[:-1]), decision.view(decision_probs.shape[:-1])
        )

    @property
    def mode(self) -> Tensor:
        """The most likely action of every agent."""
        return self._pack(self.node_logits.argmax(-1), self.decision_logits.argmax(-1))

    @property
    def deterministic_sample(self) -> Tensor:  # noqa: D102
        return self.mode

    def log_prob(self, value: Tensor) -> Tensor:
        """float ``[*B, A]``: summed log-probability of the actions that count."""
        n = self._num_node_actions
        nodes = value[..., :n].reshape(*value.shape[:-1], *self.node_log_probs.shape[-3:-1])
        node_lp = self.node_log_probs.gather(-1, nodes[..., None]).squeeze(-1)
        decision_lp = self.decision_log_probs.gather(-1, value[..., n : n + 1]).squeeze(-1)
        return (node_lp * self.node_weight).sum((-1, -2)) + decision_lp * self.decision_weight

    def entropy(self) -> Tensor:
        """float ``[*B, A]``: summed entropy of the action components that count."""
        node_h = -(self.node_log_probs.exp() * self.node_log_probs).sum(-1)
        decision_h = -(self.decision_log_probs.exp() * self.decision_log_probs).sum(-1)
        return (node_h * self.node_weight).sum((-1, -2)) + decision_h * self.decision_weight
