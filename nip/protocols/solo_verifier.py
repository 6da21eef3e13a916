"""Solo verifier: the verifier decides from the graphs alone, in one round (a baseline)."""

import torch
from torch import Tensor

from nip.protocols.base import PROTOCOL_REGISTRY, DeterministicProtocolHandler, require_rounds


@PROTOCOL_REGISTRY.register("solo_verifier")
class SoloVerifierProtocolHandler(DeterministicProtocolHandler):
    """One round: the verifier decides, or the episode ends undecided (terminated)."""

    agent_names = ("verifier",)
    channel_names = ("main",)

    def __init__(self, params):
        super().__init__(params)
        require_rounds(params, max_rounds=1, min_rounds=1)

    @property
    def agent_channel_visibility(self) -> Tensor:  # noqa: D102
        return torch.ones(1, 1, dtype=torch.bool)

    def is_agent_active(self, agent_name: str, round: int, channel_name: str) -> bool:  # noqa: D102
        return round == 0
