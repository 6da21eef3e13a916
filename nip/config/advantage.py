"""Schema of the ``advantage`` config group."""

from dataclasses import dataclass


@dataclass
class GaeConfig:
    """Generalised advantage estimation, per agent (``advantage=gae``)."""

    name: str = "gae"
    gamma: float = 0.95
    lmbda: float = 0.95
