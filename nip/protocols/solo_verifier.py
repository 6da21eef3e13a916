"""Solo verifier: the verifier decides from the graphs alone, in one round (a baseline)."""

from nip.protocols.base import PROTOCOL_REGISTRY, DeterministicProtocolHandler


@PROTOCOL_REGISTRY.register("solo_verifier")
class SoloVerifierProtocolHandler(DeterministicProtocolHandler):
    """One round: the verifier decides, or the episode ends undecided (terminated)."""

    agent_names = ("verifier",)
    channel_names = ("main",)
    fixed_rounds = (1, 1, None)

    def is_agent_active(self, agent_name: str, round: int, channel_name: str) -> bool:  # noqa: D102
        return round == 0
