"""Debate: two provers argue opposite sides, each in its own channel, to a verifier."""

from nip.protocols.base import PROTOCOL_REGISTRY, DeterministicProtocolHandler


class TwoProverTurns(DeterministicProtocolHandler):
    """Turn order shared by debate and MNIP.

    Each prover writes only in its own channel; the verifier writes in both on its turns.
    Simultaneous (default): the verifier and the two provers alternate, the verifier first
    if ``verifier_first``. Sequential: a period of three rounds, verifier / first prover /
    second prover if ``verifier_first``, else first prover / second prover / verifier, where
    the first prover is ``prover0`` if ``prover0_first``.
    """

    agent_names = ("prover0", "prover1", "verifier")
    channel_names = ("prover0_channel", "prover1_channel")

    def is_agent_active(self, agent_name: str, round: int, channel_name: str) -> bool:  # noqa: D102
        p = self.params
        if agent_name != "verifier" and channel_name != f"{agent_name}_channel":
            return False
        if not p.sequential:
            verifier_turn = round % 2 == (0 if p.verifier_first else 1)
            return verifier_turn == (agent_name == "verifier")
        first, second = ("prover0", "prover1") if p.prover0_first else ("prover1", "prover0")
        order = ("verifier", first, second) if p.verifier_first else (first, second, "verifier")
        return order[round % 3] == agent_name


@PROTOCOL_REGISTRY.register("debate")
class DebateProtocolHandler(TwoProverTurns):
    """Both provers see both channels; prover0 argues "reject", prover1 "accept"."""
