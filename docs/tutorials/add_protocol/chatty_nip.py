"""Chatty NIP: the prover sends two messages for each of the verifier's."""

from nip.protocols.base import PROTOCOL_REGISTRY, DeterministicProtocolHandler


@PROTOCOL_REGISTRY.register("chatty_nip")
class ChattyNipProtocolHandler(DeterministicProtocolHandler):
    """Rounds come in threes: the verifier speaks in one, the prover in two.

    With ``protocol.verifier_first`` (the default) the verifier speaks in
    rounds 0, 3, 6, ...; without it in rounds 2, 5, 8, ..., after the
    prover's two messages.
    """

    agent_names = ("prover", "verifier")
    channel_names = ("main",)

    def is_agent_active(self, agent_name: str, round: int, channel_name: str) -> bool:
        verifier_round = round % 3 == (0 if self.params.verifier_first else 2)
        return verifier_round == (agent_name == "verifier")
