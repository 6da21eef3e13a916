"""Generate the configuration reference from the config schemas, so that it cannot drift.

The reference is built from what Hydra itself uses: the root schema
:class:`~nip.config.root.HyperParameters`, the schema of every option of every config group
(:func:`nip.config.root.group_schemas`, registered in the ConfigStore as
``<option>_schema``), and the YAML files of ``conf/<group>/`` that pick those schemas and set
values of their own. For each field it gives the name, the type (an ``Enum``'s allowed
values), the default and the description from the numpy-style ``Attributes`` section of the
schema's docstring (or of a base class's).

As a Sphinx extension it writes ``docs/reference/_generated/config_groups.rst`` when the
builder starts; ``docs/reference/configuration.rst`` includes it. ``tests/test_docs.py``
checks that every field of every schema is documented.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CONF_DIR = REPO / "conf"
OUTPUT = REPO / "docs" / "reference" / "_generated" / "config_groups.rst"

# Config groups in the order of the defaults list of conf/config.yaml.
GROUP_ORDER = (
    "trainer",
    "loss",
    "scenario",
    "protocol",
    "advantage",
    "schedule",
    "device",
    "logger",
)

# Description of a ``name`` field that a schema's docstring leaves out: every group option's
# schema has one, and it always means the same.
NAME_DESCRIPTION = (
    "The option's name: which registered implementation (or variant of the group) this is. "
    "Set by the option's YAML file; not meant to be overridden."
)


@dataclass
class FieldDoc:
    """One documented field of a schema.

    Attributes
    ----------
    name : str
        The field's name.
    type : str
        The annotation, as written in reStructuredText.
    default : str
        The default value, as it would be written in YAML (``required`` if none).
    description : str
        The description, from the docstring's ``Attributes`` section.
    choices : tuple of str
        An ``Enum`` field's allowed values (empty otherwise).
    schema : type or None
        The dataclass of a nested schema (documented in its own table), else ``None``.
    """

    name: str
    type: str
    default: str
    description: str
    choices: tuple[str, ...] = ()
    schema: type | None = None


@dataclass
class OptionDoc:
    """One option of a config group: a YAML file in ``conf/<group>/``.

    Attributes
    ----------
    name : str
        The option (the YAML file's stem), as in ``group=name``.
    schema : str or None
        The ConfigStore name of the schema the file starts from (``<option>_schema``).
    values : dict
        What the file sets on top of the schema's defaults (its own group's keys).
    overrides : list of str
        Other groups' options the file chooses (``override /loss: reinforce``).
    """

    name: str
    schema: str | None
    values: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)


# -- docstrings ---------------------------------------------------------------------------


def _numpy_section(doc: str, title: str) -> list[str]:
    """The lines of section ``title`` of a numpy-style docstring (without its header)."""
    lines = doc.splitlines()
    for i in range(len(lines) - 1):
        if lines[i].strip() == title and set(lines[i + 1].strip()) == {"-"}:
            body = []
            for j in range(i + 2, len(lines)):
                nxt = lines[j + 1].strip() if j + 1 < len(lines) else ""
                if lines[j].strip() and nxt and set(nxt) == {"-"}:
                    break  # the next section's header
                body.append(lines[j])
            return body
    return []


def attribute_descriptions(cls: type) -> dict[str, str]:
    """Field name -> description, from the ``Attributes`` sections of ``cls`` and its bases.

    An entry may name several fields (``a, b : float``); each gets the entry's text. A class
    nearer ``cls`` in the method resolution order wins.
    """
    descriptions: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        doc = klass.__dict__.get("__doc__")
        if not doc:
            continue
        entries: list[tuple[list[str], list[str]]] = []
        for line in _numpy_section(inspect.cleandoc(doc), "Attributes"):
            if line and not line[0].isspace():
                names = line.split(" : ")[0]
                entries.append(([n.strip() for n in names.split(",") if n.strip()], []))
            elif entries:
                entries[-1][1].append(line.strip())
        for names, text in entries:
            description = " ".join(t for t in text if t)
            for name in names:
                descriptions[name] = description
    return descriptions


# -- types and defaults -------------------------------------------------------------------


def _dataclass_type(tp: Any) -> type | None:
    return tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None


def type_name(tp: Any) -> str:
    """A short, readable spelling of an annotation (``int | None``, ``list[str]``)."""
    if tp is type(None):
        return "None"
    if tp is Any:
        return "Any"
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_name(a) for a in args)}]"
    return str(tp).replace("typing.", "")


def yaml_value(value: Any) -> str:
    """A value as it is written in YAML or on the command line."""
    if isinstance(value, enum.Enum):
        return str(value.value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


ENV_DEFAULT = re.compile(r"^\$\{oc\.env:(\w+),'?([^'}]*)'?\}$")


def shown_default(value: str) -> str:
    """A default as the table shows it: ``${oc.env:VAR,'x'}`` reads ``$VAR, else x``."""
    match = ENV_DEFAULT.match(value)
    return f"${match[1]}, else {match[2]}" if match else value


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def schema_fields(schema: type) -> list[FieldDoc]:
    """Every field of a dataclass schema, with its type, default and description."""
    from nip.config.choices import choice_enum

    hints = typing.get_type_hints(schema)
    descriptions = attribute_descriptions(schema)
    docs = []
    for f in dataclasses.fields(schema):
        tp = hints.get(f.name, f.type)
        default = _default(f)
        nested = _dataclass_type(tp)
        enum_cls, _ = choice_enum(tp)
        if default is dataclasses.MISSING or str(default) == "???":
            shown = "required"
        elif nested is not None:
            shown = "(table below)"
        else:
            shown = shown_default(yaml_value(default))
        description = descriptions.get(f.name, "")
        if not description and f.name == "name":
            description = NAME_DESCRIPTION
        docs.append(
            FieldDoc(
                name=f.name,
                type=type_name(tp),
                default=shown,
                description=description,
                choices=tuple(str(m.value) for m in enum_cls) if enum_cls else (),
                schema=nested,
            )
        )
    return docs


def nested_schemas(schema: type, prefix: str) -> list[tuple[str, type]]:
    """``(dotted path, schema)`` of ``schema`` and every dataclass nested in its fields."""
    found = [(prefix, schema)]
    for f in schema_fields(schema):
        if f.schema is not None:
            found.extend(nested_schemas(f.schema, f"{prefix}.{f.name}" if prefix else f.name))
    return found


# -- the YAML options ---------------------------------------------------------------------


def read_option(path: Path, group: str) -> OptionDoc:
    """What ``conf/<group>/<option>.yaml`` picks and sets."""
    text = path.read_text()
    data = yaml.safe_load(text) or {}
    schema = None
    overrides = []
    for entry in data.pop("defaults", []) or []:
        if isinstance(entry, str) and entry.split("@")[0].endswith("_schema"):
            schema = entry.split("@")[0]
        elif isinstance(entry, dict):
            for key, value in entry.items():
                if key.startswith("override "):
                    overrides.append(f"{key.removeprefix('override ').lstrip('/')}={value}")
    if re.search(r"^#\s*@package\s+_global_", text, re.MULTILINE):
        data = data.get(group, {}) or {}
    return OptionDoc(name=path.stem, schema=schema, values=data, overrides=overrides)


def group_options(group: str) -> list[OptionDoc]:
    """The options of a config group, from its YAML files."""
    return [read_option(p, group) for p in sorted((CONF_DIR / group).glob("*.yaml"))]


# -- everything together ------------------------------------------------------------------


def default_options() -> dict[str, str]:
    """Group -> the option ``conf/config.yaml``'s defaults list picks."""
    data = yaml.safe_load((CONF_DIR / "config.yaml").read_text())
    chosen = {}
    for entry in data.get("defaults", []):
        if isinstance(entry, dict):
            for key, value in entry.items():
                if not key.startswith("override ") and value is not None:
                    chosen[key] = str(value)
    return chosen


def documented_schemas() -> dict[str, type]:
    """Every schema the reference documents: dotted config path (or ``group:schema``) -> class.

    The root schema is ``""``; a group option's schema is ``"<group>:<option>_schema"``; a
    nested schema is its parent's key plus ``.field``.
    """
    from nip.config.root import HyperParameters, group_schemas

    schemas: dict[str, type] = dict(nested_schemas(HyperParameters, ""))
    for group, options in group_schemas().items():
        for option, schema in options.items():
            schemas.update(nested_schemas(schema, f"{group}:{option}_schema"))
    return schemas


def _cell(text: str) -> str:
    return " ".join(text.split()) or " "


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1", "   :widths: auto", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {_cell(row[0])}")
        lines.extend(f"     - {_cell(c)}" for c in row[1:])
    return [*lines, ""]


def _fields_table(schema: type, prefix: str, groups: dict[str, str] | None = None) -> list[str]:
    """A table of the fields of ``schema``; ``groups`` gives the root's group defaults."""
    rows = []
    for f in schema_fields(schema):
        description = f.description
        if groups and f.name in groups:
            f = dataclasses.replace(f, type="group option", default=groups[f.name])
            description = (
                f"Which option of the ``{f.name}`` group (``{f.name}=<option>``): see "
                f"*Group* ``{f.name}`` below."
            )
        if f.choices:
            description += " One of: " + ", ".join(f"``{c}``" for c in f.choices) + "."
        if f.schema is not None:
            description += f" Fields: ``{prefix}{f.name}.*`` below."
        rows.append([f"``{prefix}{f.name}``", f"``{f.type}``", f"``{f.default}``", description])
    return _table(rows, ["key", "type", "default", "description"])


def _heading(text: str, char: str) -> list[str]:
    return [text, char * len(text), ""]


def _schema_section(schema: type, path: str, char: str) -> list[str]:
    """A table for ``schema`` at config path ``path`` and one for each schema nested in it."""
    lines = []
    for sub_path, sub in nested_schemas(schema, path):
        title = f"``{sub_path}``: :class:`~{sub.__module__}.{sub.__qualname__}`"
        lines += _heading(title, char)
        summary = (inspect.getdoc(sub) or "").split("\n\n")[0]
        if summary:
            lines += [" ".join(summary.split()), ""]
        lines += _fields_table(sub, f"{sub_path}.")
    return lines


def render() -> str:
    """The reStructuredText of the generated part of the configuration reference."""
    from nip.config.root import HyperParameters, group_schemas

    lines = [
        ".. This file is generated by docs/_ext/config_reference.py; do not edit it.",
        "",
    ]
    lines += _heading("Top-level keys", "-")
    lines += [
        "The root schema :class:`~nip.config.root.HyperParameters`. Each group field is "
        "filled by one option of that group (sections below).",
        "",
    ]
    lines += _fields_table(HyperParameters, "", groups=default_options())
    for name in ("checkpoint", "base_run"):
        sub = {f.name: f for f in schema_fields(HyperParameters)}[name].schema
        lines += _schema_section(sub, name, "~")
    schemas = group_schemas()
    for group in [*GROUP_ORDER, *sorted(set(schemas) - set(GROUP_ORDER))]:
        lines += _heading(f"Group ``{group}``", "-")
        rows = []
        for option in group_options(group):
            sets = ", ".join(f"``{group}.{k}={yaml_value(v)}``" for k, v in option.values.items())
            chooses = ", ".join(f"``{o}``" for o in option.overrides)
            rows.append(
                [
                    f"``{group}={option.name}``",
                    f"``{option.schema}``" if option.schema else "(no schema)",
                    sets,
                    chooses,
                ]
            )
        lines += [
            f"Options (the files ``conf/{group}/*.yaml``), the schema each starts from and what "
            "it sets beyond the schema's defaults:",
            "",
        ]
        lines += _table(rows, ["option", "schema", "sets", "also chooses"])
        for option, schema in schemas[group].items():
            title = f"Schema ``{option}_schema``"
            lines += _heading(title, "~")
            lines += [
                f":class:`~{schema.__module__}.{schema.__qualname__}`: "
                + " ".join((inspect.getdoc(schema) or "").split("\n\n")[0].split()),
                "",
            ]
            lines += _fields_table(schema, f"{group}.")
            for sub_path, sub in nested_schemas(schema, group)[1:]:
                lines += _heading(f"``{sub_path}``", "^")
                lines += [f":class:`~{sub.__module__}.{sub.__qualname__}`", ""]
                lines += _fields_table(sub, f"{sub_path}.")
    return "\n".join(lines) + "\n"


def write(output: Path = OUTPUT) -> bool:
    """Write the generated page if its text changed; whether it was written."""
    text = render()
    if output.is_file() and output.read_text() == text:
        return False
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    return True


def _on_builder_inited(app: Any) -> None:
    write()


def setup(app: Any) -> dict[str, Any]:
    """Sphinx entry point: regenerate the page whenever the docs are built."""
    app.connect("builder-inited", _on_builder_inited)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
