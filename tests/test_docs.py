"""The generated configuration reference covers every field of every config schema."""

import dataclasses
import enum
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "_ext"))

import config_reference  # noqa: E402

SCHEMAS = config_reference.documented_schemas()


def test_the_reference_covers_the_root_and_every_group_option():
    from nip.config.root import HyperParameters, group_schemas

    assert SCHEMAS[""] is HyperParameters
    for group, options in group_schemas().items():
        for option, schema in options.items():
            assert SCHEMAS[f"{group}:{option}_schema"] is schema


@pytest.mark.parametrize("key", sorted(SCHEMAS), ids=lambda k: k or "root")
def test_every_field_is_documented(key):
    """Adding a field to a schema without describing it in ``Attributes`` fails here."""
    schema = SCHEMAS[key]
    documented = config_reference.schema_fields(schema)
    assert [f.name for f in documented] == [f.name for f in dataclasses.fields(schema)]
    undocumented = [f.name for f in documented if not f.description.strip()]
    assert not undocumented, f"{schema.__qualname__}: no description for {undocumented}"


def test_the_page_names_every_field_and_option():
    text = config_reference.render()
    for key, schema in SCHEMAS.items():
        prefix = key.split(":")[0]
        if ":" in key and "." in key:
            prefix += key[key.index(".") :]
        for f in dataclasses.fields(schema):
            name = f"{prefix}.{f.name}" if prefix else f.name
            assert f"``{name}``" in text, name
    for group in config_reference.GROUP_ORDER:
        for path in (config_reference.CONF_DIR / group).glob("*.yaml"):
            assert f"``{group}={path.stem}``" in text


def test_every_yaml_option_starts_from_a_registered_schema():
    from nip.config.root import group_schemas

    for group, options in group_schemas().items():
        registered = {f"{option}_schema" for option in options}
        for option in config_reference.group_options(group):
            assert option.schema in registered, (group, option.name, option.schema)


class Colour(enum.StrEnum):
    RED = "red"
    GREEN = "green"


@dataclass
class _Example:
    """An example schema.

    Attributes
    ----------
    colour : Colour
        A colour.
    maybe, other : Colour or None
        Optional colours.
    size : int
        A size.
    """

    colour: Colour = Colour.RED
    maybe: Colour | None = None
    other: Colour | None = Colour.GREEN
    size: int = 3
    undocumented: float = 0.5


def test_enum_fields_list_their_values_and_missing_descriptions_show():
    fields = {f.name: f for f in config_reference.schema_fields(_Example)}
    assert fields["colour"].choices == ("red", "green")
    assert fields["colour"].default == "red"
    assert fields["maybe"].choices == ("red", "green") and fields["maybe"].default == "null"
    assert fields["other"].description == "Optional colours."
    assert fields["other"].type == "Colour | None"
    assert fields["size"].choices == () and fields["size"].default == "3"
    assert fields["undocumented"].description == ""
    assert "One of: ``red``, ``green``." in "\n".join(
        config_reference._fields_table(_Example, "example.")
    )
