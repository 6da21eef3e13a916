"""The trainer registry (separate module so trainers can register without import cycles)."""

from nip.registry import Registry

TRAINER_REGISTRY = Registry("trainer")
