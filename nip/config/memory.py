"""Memory checks made before anything large is allocated: the machine's free memory, and
whether the agents' networks for a batch obviously fit in it."""

from typing import TYPE_CHECKING, Any

from nip.errors import NipConfigError

if TYPE_CHECKING:
    from nip.config.root import HyperParameters
    from nip.protocols.base import ProtocolHandler


def available_memory_bytes() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` (``None`` where it cannot be read)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_model_fits(
    hp: "HyperParameters",
    protocol_handler: "ProtocolHandler",
    batch: int,
    dataset: Any = None,
    available: int | None = None,
) -> None:
    """Refuse networks that obviously cannot fit in this machine's memory.

    ``dataset`` is the data they will see (default: sizes from the config); ``available`` is
    the memory to compare with (default: read now).

    Raises
    ------
    NipConfigError
        With the scenario's estimate (its ``model_bytes``) and the memory available.
    """
    from nip.scenarios import get_scenario

    available = available if available is not None else available_memory_bytes()
    networks = get_scenario(hp.scenario.name).model_bytes(hp, protocol_handler, batch, dataset)
    if available is not None and networks > available:
        raise NipConfigError(
            f"the agents' networks (scenario.prover / scenario.verifier sizes) need about "
            f"{networks / 1e9:,.1f} GB for a batch of {batch}, more than the "
            f"{available / 1e9:,.1f} GB of memory available"
        )
