"""MNIP: two provers, each in a private channel with the verifier, both arguing "accept"."""

import torch
from torch import Tensor

from nip.protocols.base import ACCEPT, PROTOCOL_REGISTRY
from nip.protocols.debate import TwoProverTurns


@PROTOCOL_REGISTRY.register("mnip")
class MnipProtocolHandler(TwoProverTurns):
    """Debate's turn order with private channels; both provers are rewarded for acceptance."""

    @property
    def agent_channel_visibility(self) -> Tensor:  # noqa: D102
        # prover i sees only its own channel; the verifier sees both.
        return torch.tensor([[True, False], [False, True], [True, True]])

    def prover_rewards(self, verifier_reward: Tensor, decided: Tensor, decision: Tensor) -> Tensor:  # noqa: D102
        if self.params.shared_reward:
            return super().prover_rewards(verifier_reward, decided, decision)
        reward = torch.zeros((*verifier_reward.shape, 3), device=verifier_reward.device)
        reward[..., 2] = verifier_reward
        accepted = self.params.prover_reward * (decided & (decision == ACCEPT)).float()
        reward[..., 0] = accepted
        reward[..., 1] = accepted
        return reward
