"""ADP: the prover sends one message, then the verifier decides (an NP-style proof)."""

import torch
from torch import Tensor

from nip.protocols.base import PROTOCOL_REGISTRY, DeterministicProtocolHandler, require_rounds


@PROTOCOL_REGISTRY.register("adp")
class AdpProtocolHandler(DeterministicProtocolHandler):
    """Round 0: the prover speaks; round 1: the verifier decides."""

    agent_names = ("prover", "verifier")
    channel_names = ("main",)

    def __init__(self, params):
        super().__init__(params)
        require_rounds(params, max_rounds=2, min_rounds=1, verifier_first=False)

    @property
    def agent_channel_visibility(self) -> Tensor:  # noqa: D102
        return torch.ones(2, 1, dtype=torch.bool)

    def is_agent_active(self, agent_name: str, round: int, channel_name: str) -> bool:  # noqa: D102
        return (round == 0) == (agent_name == "prover")
