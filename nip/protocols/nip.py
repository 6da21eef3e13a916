"""NIP: one prover and one verifier exchange messages in one shared channel."""

from nip.protocols.base import PROTOCOL_REGISTRY, DeterministicProtocolHandler


@PROTOCOL_REGISTRY.register("nip")
class NipProtocolHandler(DeterministicProtocolHandler):
    """Prover and verifier alternate in channel ``main``; the verifier starts by default."""

    agent_names = ("prover", "verifier")
    channel_names = ("main",)

    def is_agent_active(self, agent_name: str, round: int, channel_name: str) -> bool:  # noqa: D102
        verifier_round = round % 2 == (0 if self.params.verifier_first else 1)
        return verifier_round if agent_name == "verifier" else not verifier_round
