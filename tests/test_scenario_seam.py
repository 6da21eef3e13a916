"""Scenarios plug in through one interface: nothing else imports a specific scenario."""

import ast
from pathlib import Path

import pytest

from nip.config import validate_hyper_params
from nip.config.root import group_schemas
from nip.errors import NipConfigError
from nip.scenarios import SCENARIO_REGISTRY, Scenario, get_scenario
from tests.helpers import tiny_hyper_params

PACKAGE = Path(__file__).resolve().parent.parent / "nip"


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports (absolute names; relative imports resolved)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_module_outside_a_scenario_package_imports_it():
    scenarios = sorted(SCENARIO_REGISTRY)
    assert "graph_iso" in scenarios
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        for name in scenarios:
            if relative.parts[:2] == ("scenarios", name):
                continue
            prefix = f"nip.scenarios.{name}"
            if any(m == prefix or m.startswith(prefix + ".") for m in imported_modules(path)):
                offenders.append(f"{relative} imports {prefix}")
    assert offenders == []


def test_every_scenario_brings_its_schema_and_yaml():
    schemas = group_schemas()["scenario"]
    conf = PACKAGE.parent / "conf" / "scenario"
    for name, cls in SCENARIO_REGISTRY.items():
        assert issubclass(cls, Scenario)
        assert schemas[name] is cls.config_schema
        assert cls.config_schema().name == name  # the schema's name selects the scenario
        assert (conf / f"{name}.yaml").is_file()
        scenario = get_scenario(name)
        assert set(scenario.value_in_keys) <= set(scenario.policy_in_keys)


def test_unknown_scenario_name_is_one_line(tmp_path):
    hp = tiny_hyper_params(tmp_path)
    hp.scenario.name = "nonexistent"
    with pytest.raises(NipConfigError, match="unknown scenario.name 'nonexistent'; known: "):
        validate_hyper_params(hp)
