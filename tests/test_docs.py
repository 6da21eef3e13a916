"""The documentation cannot drift: the configuration reference covers every field of every
schema, and the commands and config keys the pages name exist."""

import dataclasses
import enum
import re
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


# -- the commands and keys the pages name -------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
# The tutorials' commands name options their pages add; tests/test_tutorials.py runs them.
PAGES = [REPO / "README.md", *sorted((REPO / "docs" / "guides").glob("*.md"))]


def documented_commands(module: str) -> list[tuple[str, list[str]]]:
    """``(page, words)`` of every ``python -m <module>`` line in the pages' shell blocks."""
    import os
    import shlex

    found = []
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
            for line in block.splitlines():
                words = shlex.split(os.path.expandvars(line), comments=True)
                if words[:3] == ["python", "-m", module]:
                    found.append((page.name, words[3:]))
    return found


def key_values(words: list[str]) -> list[str]:
    return [w for w in words if "=" in w and not w.startswith("-")]


RUN_COMMANDS = documented_commands("nip.run")


def test_the_pages_have_run_commands():
    assert len(RUN_COMMANDS) > 30


@pytest.mark.parametrize("page, words", RUN_COMMANDS, ids=[" ".join(w) for _, w in RUN_COMMANDS])
def test_documented_run_commands_compose_and_validate(page, words):
    """Every ``python -m nip.run`` line of the guides and README composes and validates."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from nip.cli import CONFIG_DIR, SWEEPS_DIR, _sweep_variants
    from nip.config import register_configs, validate_hyper_params

    if {"-cd", "-cn", "-cp"} & set(words) or any("<" in w for w in words):
        pytest.skip("a placeholder or a user's config directory")
    overrides = [w for w in key_values(words) if not w.startswith(("hydra.", "hydra/"))]
    overrides.append(f"hydra.searchpath=[file://{SWEEPS_DIR}]")
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        for variant in _sweep_variants(overrides):
            validate_hyper_params(OmegaConf.to_object(compose("config", overrides=variant)))


@pytest.mark.parametrize(
    "module, schema",
    [
        ("nip.evaluate", "nip.evaluate:EvaluateArgs"),
        ("nip.visualise", "nip.visualise:VisualiseArgs"),
        ("nip.probe", "nip.probe:ProbeArgs"),
    ],
)
def test_documented_playback_commands_parse(module, schema):
    import importlib

    from nip.cli import parse_args

    module_name, _, class_name = schema.partition(":")
    args_schema = getattr(importlib.import_module(module_name), class_name)
    commands = documented_commands(module)
    assert commands
    for _, words in commands:
        parse_args(args_schema, key_values(words), "")


def test_documented_config_keys_exist():
    """Every ``group.key`` a page names (in prose or in a command) is a field of a schema."""
    keys = set()
    for key, schema in SCHEMAS.items():
        prefix = key.split(":")[0]
        if ":" in key and "." in key:
            prefix += key[key.index(".") :]
        keys.update(f"{prefix}.{f.name}" if prefix else f.name for f in dataclasses.fields(schema))
    groups = "|".join(f.name for f in dataclasses.fields(SCHEMAS[""]) if f.name != "seed")
    pattern = re.compile(rf"(?<![\w./-])(?:{groups})\.[a-z_][\w.]*")
    unknown = []
    for page in [*PAGES, *sorted((REPO / "docs" / "tutorials").glob("*.md"))]:
        text = page.read_text()
        for match in pattern.finditer(text):
            name = match.group().rstrip(".")
            method_or_file = text[match.end() : match.end() + 1] == "(" or name.endswith(".py")
            if name not in keys and not method_or_file:
                unknown.append((page.name, name))
    assert not unknown
