"""Scenarios: the tasks the verifier learns to decide (see :mod:`nip.scenarios.base`).

Each scenario is one package here whose ``scenario`` module registers a
:class:`~nip.scenarios.base.Scenario` subclass; every such module is imported (and so
registered) when this package is.
"""

import importlib
import pkgutil

from nip.scenarios.base import SCENARIO_REGISTRY, Scenario, get_scenario

for _package in pkgutil.iter_modules(__path__):
    if _package.ispkg:
        importlib.import_module(f"{__name__}.{_package.name}.scenario")

__all__ = ["SCENARIO_REGISTRY", "Scenario", "get_scenario"]
