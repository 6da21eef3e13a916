"""Stop requests by signal: SIGTERM, SIGINT and SIGUSR2 become a flag the trainer polls.

SLURM sends SIGTERM at a job's time limit and on preemption, and (with ``--signal``)
SIGUSR2 ahead of them; submitit uses SIGUSR2 too; a person presses Ctrl-C (SIGINT). The
first such signal only records the request, so the trainer can stop at a safe point and
write a checkpoint; a second one stops at once, without writing anything more.
"""

import signal
import threading
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)


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
    """

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise StopNow(signum)
        self.signum = signum

    def __enter__(self) -> "StopRequests":
        self.signum = None
        # Handlers can only be installed from the main thread; elsewhere nothing is caught.
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
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
