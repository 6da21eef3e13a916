"""Interaction protocols: who speaks when, in which channel, and how each agent is rewarded.

Each protocol is one module registering a :class:`ProtocolHandler` subclass in
``PROTOCOL_REGISTRY`` plus one YAML file in ``conf/protocol/``.
"""

from nip.protocols import nip as _nip  # noqa: F401  (registers the protocol)
from nip.protocols.base import (
    PROTOCOL_REGISTRY,
    ProtocolHandler,
    ProtocolStep,
    build_protocol_handler,
)

__all__ = ["PROTOCOL_REGISTRY", "ProtocolHandler", "ProtocolStep", "build_protocol_handler"]
