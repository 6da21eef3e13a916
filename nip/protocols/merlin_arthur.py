"""Merlin-Arthur: one of two provers, chosen at random per episode, speaks once."""

import torch
from torch import Tensor

from nip.protocols.base import PROTOCOL_REGISTRY, ProtocolHandler


@PROTOCOL_REGISTRY.register("merlin_arthur")
class MerlinArthurProtocolHandler(ProtocolHandler):
    """Round 0: ``prover1`` (argues "accept") if the episode seed is even, else ``prover0``
    (argues "reject"); round 1: the verifier decides. The verifier does not know which."""

    agent_names = ("prover0", "prover1", "verifier")
    channel_names = ("main",)
    fixed_rounds = (2, 1, False)

    def active_mask(self, round: Tensor, seed: Tensor) -> Tensor:  # noqa: D102
        first_round = round == 0
        prover1 = seed % 2 == 0
        mask = torch.stack([first_round & ~prover1, first_round & prover1, round == 1], dim=-1)
        return mask.unsqueeze(-1)
