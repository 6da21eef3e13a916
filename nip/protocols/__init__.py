"""Interaction protocols: who speaks when, in which channel, and how each agent is rewarded.

Each protocol is one module in this package registering a :class:`ProtocolHandler` subclass
in ``PROTOCOL_REGISTRY`` plus one YAML file in ``conf/protocol/``; every module here is
imported (and so registered) when the package is.
"""

import importlib
import pkgutil

from nip.protocols.base import (
    PROTOCOL_REGISTRY,
    ProtocolHandler,
    ProtocolStep,
    build_protocol_handler,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["PROTOCOL_REGISTRY", "ProtocolHandler", "ProtocolStep", "build_protocol_handler"]
