"""The allowed values of every string setting with a fixed set of choices, as string enums.

A schema field typed with one of these enums is checked by OmegaConf when a config is
composed: ``device.type=cpux`` is refused with the allowed values before anything runs.
OmegaConf matches a string to a member by the member's *name*, so every member is named
exactly as it is spelt on the command line; ``enum.auto()`` makes that name its value too.
Members are ``str`` subclasses: they compare equal to their spelling and serialise to it in
JSON (checkpoints, the science check, W&B), so runs from before these enums read the same.

:func:`check_choices` applies the same rule to configs built in Python, which OmegaConf
never sees.
"""

import dataclasses
import enum
import types
import typing
from typing import Any

from nip.errors import NipConfigError


class DeviceType(enum.StrEnum):
    """``device.type``: where tensors live (``auto`` picks CUDA when a GPU is present)."""

    auto = enum.auto()
    cpu = enum.auto()
    cuda = enum.auto()


class LoggerMode(enum.StrEnum):
    """``logger.mode`` of ``logger=wandb``."""

    online = enum.auto()
    offline = enum.auto()
    disabled = enum.auto()


class CriticLoss(enum.StrEnum):
    """``loss.loss_critic_type``: the distance between a value prediction and its target."""

    smooth_l1 = enum.auto()
    l1 = enum.auto()
    l2 = enum.auto()


class ForceGuess(enum.StrEnum):
    """``protocol.force_guess``: the decision that replaces the verifier's (debugging)."""

    zero = enum.auto()
    one = enum.auto()
    y = enum.auto()


class Activation(enum.StrEnum):
    """``scenario.<agent>.activation``: the nonlinearity used throughout an agent."""

    tanh = enum.auto()
    relu = enum.auto()
    sigmoid = enum.auto()


class SpgVariant(enum.StrEnum):
    """``trainer.variant`` of ``trainer=spg``: which opponent-shaping update is used."""

    spg = enum.auto()
    pspg = enum.auto()
    lola = enum.auto()
    pola = enum.auto()
    sos = enum.auto()
    psos = enum.auto()


def choice_enum(hint: Any) -> tuple[type[enum.Enum] | None, bool]:
    """The ``Enum`` a field's type names (``E`` or ``E | None``) and whether ``None`` is allowed.

    Returns ``(None, ...)`` for any other type.
    """
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint, False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        enums = [a for a in args if isinstance(a, type) and issubclass(a, enum.Enum)]
        if len(enums) == 1:
            return enums[0], type(None) in args
    return None, False


def check_choices(config: Any, prefix: str = "") -> None:
    """Refuse a value outside its ``Enum`` in ``config`` or any dataclass inside it.

    Configs composed by Hydra are already checked by OmegaConf; this is for configs built
    directly in Python, where a dataclass takes any string.

    Parameters
    ----------
    config : dataclass instance
        A schema instance (the whole :class:`~nip.config.root.HyperParameters` or a group).
    prefix : str
        The config path of ``config`` with a trailing dot (``"scenario."``), for messages.

    Raises
    ------
    NipConfigError
        ``<key> must be one of a, b, c, got 'x'``.
    """
    if not dataclasses.is_dataclass(config):
        return
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        choices, optional = choice_enum(hints.get(f.name))
        if choices is not None:
            allowed = [member.value for member in choices]
            if not (optional and value is None) and value not in allowed:
                spelt = ", ".join(allowed) + (" or null" if optional else "")
                raise NipConfigError(f"{prefix}{f.name} must be one of {spelt}, got {value!r}")
        elif dataclasses.is_dataclass(value):
            check_choices(value, f"{prefix}{f.name}.")
