"""Stop requests by signal: SIGTERM, SIGINT and SIGUSR2 become a flag the trainer polls.

SLURM sends SIGTERM at a job's time limit and on preemption, and (with ``--signal``)
SIGUSR2 ahead of them; submitit uses SIGUSR2 too; a person presses Ctrl-C (SIGINT). The
first such signal only records the request, so the trainer can stop at a safe point and
write a checkpoint; a second one stops at once, without writing anything more.

Inside a submitit job, SIGUSR2 means "preempted or about to time out: checkpoint and
requeue", and SIGTERM is ignored on purpose (SLURM sends it along with preemption and on
every requeue); stop requests keep that division: SIGTERM stays ignored there, and after a
stop on SIGUSR2 the entry point hands over to submitit's own handler, which requeues the job
(:func:`submitit_handler`).
"""

import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)


def submitit_handler(signum: int) -> Callable[[int, FrameType | None], None] | None:
    """The handler submitit installed for ``signum`` in this process, or ``None``.

    submitit binds its handlers as methods of its job's signal handler object: SIGUSR2 to
    "checkpoint and requeue", SIGTERM (and SIGCONT) to "ignore".
    """
    handler = signal.getsignal(signum)
    owner = getattr(handler, "__self__", None)
    if owner is not None and type(owner).__module__.split(".")[0] == "submitit":
        return handler
    return None


def shield_resource_tracker() -> None:
    """Start multiprocessing's resource tracker with SIGUSR2 blocked.

    SLURM signals every process of a job step, helpers included. The tracker (a separate
    process that torch's and TorchRL's shared-memory objects register with) ignores SIGINT
    and SIGTERM but dies of SIGUSR2, and its death litters the job's log with tracebacks.
    A blocked signal mask is inherited across fork and exec, so starting it here keeps it
    alive through a preemption.
    """
    from multiprocessing import resource_tracker

    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    try:
        resource_tracker.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class StopNow(BaseException):
    """A second stop signal: leave immediately (not an ``Exception``: nothing may catch it)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopRequests:
    """While active (a ``with`` block in the main thread), record stop signals.

    Attributes
    ----------
    signum : int or None
        The first stop signal received, or ``None``.
    received : set of int
        Every stop signal received.
    """

    def __init__(self):
        self.signum: int | None = None
        self.received: set[int] = set()
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise StopNow(signum)
        self.signum = signum
        self.received.add(signum)

    def __enter__(self) -> "StopRequests":
        self.signum = None
        self.received = set()
        # Handlers can only be installed from the main thread; elsewhere nothing is caught.
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                if signum == signal.SIGTERM and submitit_handler(signum) is not None:
                    continue  # submitit's SIGTERM: SLURM's requeue or preemption notice
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    @property
    def requested(self) -> bool:
        """Whether a stop signal has arrived."""
        return self.signum is not None
