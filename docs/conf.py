"""Sphinx configuration of the ``nip`` documentation (``make docs``)."""

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS.parent))

import nip  # noqa: E402

project = "nip"
author = "the nip authors"
release = version = nip.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_parser",
    "config_reference",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = [
    "_build",
    "reference/_generated",
    # Tutorial files included verbatim by the pages (and run by tests/test_tutorials.py).
    "tutorials/add_protocol",
    "tutorials/add_trainer",
]
templates_path = ["_templates"]

# MyST: ```{directive}``` blocks, and anchors for the Markdown headings (for cross-links).
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# API reference: one generated page per module of the package (docs/api/_autosummary).
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
    "member-order": "bysource",
    # Document each object where it is defined, not again where a package re-exports it.
    "ignore-module-all": True,
}
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_class_signature = "separated"

# The docstrings are numpy-style. Attributes become an "ivar" field list rather than
# attribute entries, which would duplicate the dataclass fields autodoc documents itself.
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_ivar = True
napoleon_use_rtype = False

# Type references to torch, TorchRL, TensorDict and Hydra are not resolved (no intersphinx:
# the build runs offline), so unresolved references are not warnings.
nitpicky = False

html_theme = "furo"
html_title = f"nip {release}"

# Classes with a page of their own (docs/api/interfaces.rst, with inherited and private
# members) are left out of their module's generated page, so each is described once.
INTERFACE_CLASSES = {
    "nip.trainers.rl_tensordict_base.TensorDictRlTrainer",
    "nip.trainers.checkpointed.CheckpointedTrainer",
    "nip.trainers.trainer_base.Trainer",
    "nip.trainers.rl_testing.RlTestingMixin",
    "nip.scenarios.base.Scenario",
    "nip.protocols.base.ProtocolHandler",
    "nip.protocols.base.DeterministicProtocolHandler",
}


def _skip_interface_classes(app, what, name, obj, skip, options):
    """Skip the interface classes when a module page lists its members."""
    if what == "module" and isinstance(obj, type):
        if f"{obj.__module__}.{obj.__qualname__}" in INTERFACE_CLASSES:
            return True
    return None


def split_attribute_entries(lines: list[str]) -> list[str]:
    """Give each name of an ``Attributes`` entry such as ``a, b : float`` its own entry.

    Napoleon splits such entries in ``Parameters`` sections but not in ``Attributes``, where
    Sphinx would read ``a,`` as a type. A list of types (``int, int, float``) with one type
    per name is distributed over the names.
    """
    out: list[str] = []
    in_attributes = False
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and nxt.strip() and set(nxt.strip()) == {"-"}:
            in_attributes = line.strip() == "Attributes"
            out += [line, nxt]
            i += 2
            continue
        if in_attributes and line and not line[0].isspace() and ", " in line.split(" : ")[0]:
            names_part, _, type_part = line.partition(" : ")
            names = [n.strip() for n in names_part.split(",")]
            types = [t.strip() for t in type_part.split(",")] if type_part else []
            j = i + 1
            while j < len(lines) and (not lines[j] or lines[j][0].isspace()):
                j += 1
            body = lines[i + 1 : j]
            while body and not body[-1].strip():
                body.pop()
            for k, name in enumerate(names):
                tp = types[k] if len(types) == len(names) else type_part.strip()
                out.append(f"{name} : {tp}" if tp else name)
                out += body
            i = j
            continue
        out.append(line)
        i += 1
    return out


def _split_attribute_entries(app, what, name, obj, options, lines):
    lines[:] = split_attribute_entries(lines)


def setup(app):  # noqa: D103
    app.connect("autodoc-skip-member", _skip_interface_classes)
    # Before napoleon (priority 500) turns the sections into fields.
    app.connect("autodoc-process-docstring", _split_attribute_entries, priority=400)
