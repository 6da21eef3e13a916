"""Whether other busy processes share the CPU with a run, which stalls torch's threads."""

import os
import time
from pathlib import Path


def runnable_tasks(loadavg: Path = Path("/proc/loadavg")) -> int | None:
    """Tasks running or waiting for a core right now, this process included (Linux only).

    Returns
    -------
    int or None
        The running count of ``/proc/loadavg`` (its fourth field is ``running/total``);
        ``None`` where the file is missing or unreadable.
    """
    try:
        return int(loadavg.read_text().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return None


def other_busy_tasks(samples: int = 5, interval_s: float = 0.02) -> int:
    """Other tasks that stay runnable over a short window (the minimum over ``samples``).

    The minimum ignores short-lived tasks; a process that computes continuously is runnable
    in every sample. Returns 0 where the count cannot be read.
    """
    counts = []
    for i in range(samples):
        if i:
            time.sleep(interval_s)
        count = runnable_tasks()
        if count is None:
            return 0
        counts.append(count)
    return max(min(counts) - 1, 0)  # this process is one of the running tasks


def shared_cores_warning(num_threads: int, other_busy: int, num_cores: int | None) -> str | None:
    """A warning when busy processes and this run's threads need more cores than there are.

    With every core taken, each parallel region of a multi-threaded torch op waits for the
    thread that lost its core: on 2 cores, one busy process made a paper-config minibatch
    step about 4x slower with 2 threads, while 1 thread was only about 1.4x slower.

    Parameters
    ----------
    num_threads : int
        Torch's intra-op threads for this run.
    other_busy : int
        Other runnable tasks (:func:`other_busy_tasks`).
    num_cores : int or None
        Cores of the machine (``os.cpu_count()``).

    Returns
    -------
    str or None
        The message, or ``None`` when there is no contention to report.
    """
    if not num_cores or num_threads < 2 or other_busy == 0:
        return None
    if num_threads + other_busy <= num_cores:
        return None
    free = max(num_cores - other_busy, 1)
    return (
        f"{other_busy} other busy process(es) share this machine's {num_cores} cores with this "
        f"run's {num_threads} torch threads; multi-threaded ops stall when a thread loses its "
        f"core (several times slower). Consider device.num_threads={free} or one run per "
        f"{num_threads} free cores."
    )


def check_shared_cores(num_threads: int) -> str | None:
    """:func:`shared_cores_warning` for this machine, now."""
    return shared_cores_warning(num_threads, other_busy_tasks(), os.cpu_count())
