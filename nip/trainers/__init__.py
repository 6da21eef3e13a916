"""Trainers, registered by name (``trainer.name``)."""

from nip.trainers import ppo as _ppo  # noqa: F401  (registers the trainer)
from nip.trainers import reinforce as _reinforce  # noqa: F401
from nip.trainers import solo_agent as _solo_agent  # noqa: F401
from nip.trainers import spg as _spg  # noqa: F401
from nip.trainers.registry import TRAINER_REGISTRY

__all__ = ["TRAINER_REGISTRY"]
