"""ADP: the prover sends one message, then the verifier decides (an NP-style proof)."""

from nip.protocols.base import PROTOCOL_REGISTRY, DeterministicProtocolHandler


@PROTOCOL_REGISTRY.register("adp")
class AdpProtocolHandler(DeterministicProtocolHandler):
    """Round 0: the prover speaks; round 1: the verifier decides."""

    agent_names = ("prover", "verifier")
    channel_names = ("main",)
    fixed_rounds = (2, 1, False)

    def is_agent_active(self, agent_name: str, round: int, channel_name: str) -> bool:  # noqa: D102
        return (round == 0) == (agent_name == "prover")
