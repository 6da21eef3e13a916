"""Settings every scenario's agents share (each scenario's agent schema adds its architecture)."""

from dataclasses import dataclass


@dataclass
class LrFactors:
    """Learning-rate multipliers for an agent's actor (policy) and critic (value) parameters."""

    actor: float = 1.0
    critic: float = 1.0
