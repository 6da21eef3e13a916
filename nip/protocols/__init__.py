"""Interaction protocols: who speaks when, in which channel, and how each agent is rewarded.

Each protocol is one module registering a :class:`ProtocolHandler` subclass in
``PROTOCOL_REGISTRY`` plus one YAML file in ``conf/protocol/``.
"""

# Importing a protocol module registers it.
from nip.protocols import adp as _adp  # noqa: F401
from nip.protocols import debate as _debate  # noqa: F401
from nip.protocols import merlin_arthur as _merlin_arthur  # noqa: F401
from nip.protocols import mnip as _mnip  # noqa: F401
from nip.protocols import nip as _nip  # noqa: F401
from nip.protocols import solo_verifier as _solo_verifier  # noqa: F401
from nip.protocols.base import (
    PROTOCOL_REGISTRY,
    ProtocolHandler,
    ProtocolStep,
    build_protocol_handler,
)

__all__ = ["PROTOCOL_REGISTRY", "ProtocolHandler", "ProtocolStep", "build_protocol_handler"]
