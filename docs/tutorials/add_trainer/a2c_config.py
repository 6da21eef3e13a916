"""The schema of ``trainer=a2c``: add it to ``nip/config/trainer.py``."""

from dataclasses import dataclass
from typing import ClassVar

from nip.config.trainer import PpoTrainerConfig


@dataclass
class A2cTrainerConfig(PpoTrainerConfig):
    """Advantage actor-critic (``trainer=a2c``, with ``loss=reinforce``).

    The loop settings of PPO; one pass over each batch, since the objective has no ratio to
    correct for data collected by an older policy.
    """

    # The ``loss`` options this trainer can optimise (checked in ``check``).
    LOSSES: ClassVar[tuple[str, ...]] = ("reinforce",)

    name: str = "a2c"
    num_epochs: int = 1
