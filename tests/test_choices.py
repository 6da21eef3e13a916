"""String settings with fixed choices are enums: spelt as on the command line, refused when
misspelt (by OmegaConf when composed, by :func:`check_choices` when built in Python), and
serialised as the plain strings that checkpoints from before the enums hold."""

import dataclasses
import enum
import json
import re
import sys
import typing
from pathlib import Path

import pytest

from nip.config import validate_hyper_params
from nip.config.choices import (
    Activation,
    CriticLoss,
    DeviceType,
    ForceGuess,
    LoggerMode,
    SpgVariant,
    check_choices,
    choice_enum,
)
from nip.config.root import hyper_params_from_dict, science_dict
from nip.config.runtime import WandbLoggerConfig
from nip.errors import NipConfigError
from nip.objectives.opponent_shaping import VARIANTS
from nip.scenarios.image_classification.config import Binarification, BuildingBlock
from tests.helpers import tiny_agent, tiny_hyper_params

# The configuration reference's walk over every schema (docs/_ext, as in tests/test_docs.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "_ext"))
import config_reference  # noqa: E402


def _choice_fields() -> dict[tuple[str, str], type[enum.Enum] | None]:
    """(schema name, field name) -> the field's choice enum (or None), for every schema the
    configuration reference documents (every group option's, nested ones included)."""
    typed = {}
    for schema in set(config_reference.documented_schemas().values()):
        hints = typing.get_type_hints(schema)
        for f in dataclasses.fields(schema):
            typed[schema.__name__, f.name] = choice_enum(hints[f.name])[0]
    return typed


CHOICE_FIELDS = _choice_fields()
# Every enum some schema uses.
CHOICES = sorted({c for c in CHOICE_FIELDS.values() if c is not None}, key=lambda c: c.__name__)


@pytest.mark.parametrize("choices", CHOICES, ids=lambda c: c.__name__)
def test_members_are_named_as_spelt(choices):
    # OmegaConf matches a string to a member by name; JSON writes the value: both must agree.
    for member in choices:
        assert member.name == member.value == str(member) == f"{member}"
        assert json.dumps(member) == f'"{member.name}"'


def test_every_choice_of_the_schemas_is_typed_by_its_enum():
    expected = {
        ("DeviceConfig", "type"): DeviceType,
        ("WandbLoggerConfig", "mode"): LoggerMode,
        ("ClipLossConfig", "loss_critic_type"): CriticLoss,
        ("ReinforceLossConfig", "loss_critic_type"): CriticLoss,
        ("ProtocolConfig", "force_guess"): ForceGuess,
        ("GraphIsoAgentConfig", "activation"): Activation,
        ("ImageClassificationAgentConfig", "activation"): Activation,
        ("ImageClassificationAgentConfig", "building_block_type"): BuildingBlock,
        ("ImageClassificationScenarioConfig", "binarification"): Binarification,
        ("SpgTrainerConfig", "variant"): SpgVariant,
    }
    for key, choices in expected.items():
        assert CHOICE_FIELDS.get(key) is choices, key
    assert set(CHOICES) == set(expected.values())
    assert VARIANTS == tuple(m.value for m in SpgVariant)


def test_choice_enum_reads_optional_fields():
    assert choice_enum(ForceGuess | None) == (ForceGuess, True)
    assert choice_enum(typing.Optional[DeviceType]) == (DeviceType, True)  # noqa: UP045
    assert choice_enum(DeviceType) == (DeviceType, False)
    assert choice_enum(str) == (None, False)
    assert choice_enum(int | None) == (None, False)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda hp: setattr(hp.device, "type", "cpux"),
            "device.type must be one of auto, cpu, cuda, got 'cpux'",
        ),
        (
            lambda hp: setattr(hp.protocol, "force_guess", "two"),
            "protocol.force_guess must be one of zero, one, y or null, got 'two'",
        ),
        (
            lambda hp: setattr(hp.loss, "loss_critic_type", "huber"),
            "loss.loss_critic_type must be one of smooth_l1, l1, l2, got 'huber'",
        ),
        (
            lambda hp: setattr(hp.scenario.prover, "activation", "gelu"),
            "scenario.prover.activation must be one of tanh, relu, sigmoid, got 'gelu'",
        ),
        (
            lambda hp: setattr(hp, "logger", WandbLoggerConfig(mode="sync")),
            "logger.mode must be one of online, offline, disabled, got 'sync'",
        ),
    ],
)
def test_configs_built_in_python_are_checked_too(tmp_path, change, message):
    hp = tiny_hyper_params(tmp_path)
    change(hp)
    with pytest.raises(NipConfigError, match=f"^{re.escape(message)}$"):
        validate_hyper_params(hp)


def test_plain_strings_in_python_are_accepted(tmp_path):
    hp = tiny_hyper_params(tmp_path)
    hp.device.type, hp.protocol.force_guess, hp.loss.loss_critic_type = "cpu", "y", "l2"
    hp.scenario.verifier = dataclasses.replace(tiny_agent(1), activation="relu")
    validate_hyper_params(hp)
    check_choices(hp.scenario, "scenario.")


def test_stored_strings_come_back_as_members_and_serialise_unchanged(tmp_path):
    hp = tiny_hyper_params(tmp_path)
    hp.loss.loss_critic_type, hp.protocol.force_guess = CriticLoss.l1, ForceGuess.one
    # What a checkpoint stores: JSON of the config, choices as plain strings (as before them).
    stored = json.loads(json.dumps(dataclasses.asdict(hp)))
    assert stored["device"]["type"] == "cpu" and type(stored["device"]["type"]) is str
    rebuilt = hyper_params_from_dict(stored)
    assert rebuilt.device.type is DeviceType.cpu
    assert rebuilt.loss.loss_critic_type is CriticLoss.l1
    assert rebuilt.protocol.force_guess is ForceGuess.one
    assert rebuilt.scenario.prover.activation is Activation.tanh
    # The science check compares JSON: the enum-typed config writes the same text.
    assert json.dumps(science_dict(rebuilt), sort_keys=True) == json.dumps(
        science_dict(hp), sort_keys=True
    )
    stored["loss"]["loss_critic_type"] = "l3"
    with pytest.raises(NipConfigError, match="do not match this version"):
        hyper_params_from_dict(stored)


def test_enum_members_are_strings_everywhere_they_are_used():
    # Code compares choices with == and uses them as dict keys and torch device names.
    import torch

    from nip.utils.nn import ACTIVATIONS, activation_module

    assert DeviceType.cpu == "cpu" and torch.device(DeviceType.cpu) == torch.device("cpu")
    assert isinstance(activation_module("relu"), torch.nn.ReLU)
    assert isinstance(activation_module(Activation.sigmoid), torch.nn.Sigmoid)
    assert set(ACTIVATIONS) == set(Activation) and all(isinstance(k, str) for k in ACTIVATIONS)
    assert issubclass(SpgVariant, enum.StrEnum)
