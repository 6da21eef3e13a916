"""One writer per run directory: an advisory lock held for the whole run.

The lock is ``fcntl.flock`` on ``<run dir>/.lock``. The kernel releases it when the holding
process exits, however it exits (``SIGKILL`` included), so a crashed run never leaves a stale
lock behind; the file's content (PID and host of the holder) only serves the error message.
"""

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from nip.errors import NipError

LOCK_FILE = ".lock"
# ``nip.summarize`` tells a running job by trying the lock (shared) for an instant; a run that
# starts in that instant waits this long for it before it gives up.
READER_GRACE_S = 2.0

# Run directories this process holds: taking the lock again from the same process (the CLI
# and then run_experiment) must not block on itself.
_held: set[Path] = set()


class RunDirectoryLockedError(NipError):
    """Another process is writing to the run directory."""


@contextlib.contextmanager
def run_directory_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock for the duration of the block.

    Raises
    ------
    RunDirectoryLockedError
        If another process holds it; the message names the directory and the holder.
    """
    run_dir = Path(run_dir).resolve()
    if run_dir in _held:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            _lock_waiting_out_readers(fd)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise RunDirectoryLockedError(
                f"the run directory {run_dir} is in use by {holder}; wait for it to finish "
                f"or choose another hydra.run.dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        _held.add(run_dir)
        try:
            yield
        finally:
            _held.discard(run_dir)
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _lock_waiting_out_readers(fd: int) -> None:
    """Take the exclusive lock, retrying for ``READER_GRACE_S`` while it is busy."""
    deadline = time.monotonic() + READER_GRACE_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def is_locked(run_dir: Path) -> bool:
    """Whether a process holds ``run_dir``'s lock (a run is going on there), without waiting.

    A shared lock conflicts only with the exclusive one a live run holds, and is released at
    once; a run that starts in that instant waits :data:`READER_GRACE_S` for it. No lock file
    means no run has started there.
    """
    try:
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False  # a filesystem without flock: no run could hold it either
    finally:
        os.close(fd)  # closing releases the shared lock, if taken
    return False
