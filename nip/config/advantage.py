"""Schema of the ``advantage`` config group."""

from dataclasses import dataclass


@dataclass
class GaeConfig:
    """Generalised advantage estimation, per agent (``advantage=gae``).

    Attributes
    ----------
    gamma, lmbda : float
        Discount and GAE lambda.
    bootstrap_at_decisions : bool
        Treat an episode that a verifier's decision ends as truncated rather than finished:
        bootstrap from the value of the observation after the decision. This reproduces the
        original code, whose GAE marks only running out of rounds as terminal, for
        comparisons; it rewards deciding with the value of a game that is over. By default
        every episode end is terminal for every agent.
    """

    name: str = "gae"
    gamma: float = 0.95
    lmbda: float = 0.95
    bootstrap_at_decisions: bool = False
