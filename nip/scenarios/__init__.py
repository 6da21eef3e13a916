"""Scenarios: the tasks the verifier learns to decide (see :mod:`nip.scenarios.base`).

Each scenario is one package here whose ``scenario`` module registers a
:class:`~nip.scenarios.base.Scenario` subclass; every such module is imported (and so
registered) when this package is.
"""

import importlib
import importlib.util
import pkgutil

from nip.scenarios.base import SCENARIO_REGISTRY, Scenario, get_scenario

for _package in pkgutil.iter_modules(__path__):
    # A package becomes a scenario with its ``scenario`` module (parts may land earlier).
    if _package.ispkg and importlib.util.find_spec(f"{__name__}.{_package.name}.scenario"):
        importlib.import_module(f"{__name__}.{_package.name}.scenario")

__all__ = ["SCENARIO_REGISTRY", "Scenario", "get_scenario"]
