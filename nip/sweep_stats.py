"""The statistics of a sweep: jobs grouped into settings (seeds are replicates), and the
mean and sample standard deviation over each setting's finished seeds."""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nip.sweep_jobs import FINISHED, Job, split_override

# The training statistics are averaged over this many last iterations of each job: a single
# iteration's accuracy is too noisy to compare settings by.
LAST_TRAIN_LINES = 10
# Setting value of a job whose overrides are not known (it failed before writing any).
UNKNOWN = "?"
# Final test statistics: column name -> key of the final test line.
TEST_STATS = {
    "test_accuracy": "test_mean_accuracy",
    "test_terminated_fraction": "test_terminated_fraction",
    "test_accept_fraction": "test_accept_fraction",
    "test_reject_fraction": "test_reject_fraction",
    "test_episode_length": "test_mean_episode_length",
}
REWARD_SUFFIX = ".mean_episode_reward"
# Each agent's own test accuracy (solo-agent runs: every agent classifies alone).
SOLO_SUFFIX = ".test_accuracy"


@dataclass
class Setting:
    """The jobs of one setting: the same varying overrides, different seeds.

    Attributes
    ----------
    values : tuple of str
        The setting's value of each varying override key (``""`` where a job did not set it).
    jobs : list of Job
        Its jobs, in job order.
    stats : dict
        Statistic name -> ``(mean, std)`` over the finished jobs that have it (NaN if none;
        the std is NaN with fewer than two).
    """

    values: tuple[str, ...]
    jobs: list[Job] = field(default_factory=list)
    stats: dict[str, tuple[float, float]] = field(default_factory=dict)

    def count(self, status: str) -> int:
        """Number of its jobs with ``status``."""
        return sum(job.status == status for job in self.jobs)


@dataclass
class SweepSummary:
    """Everything :func:`summarize` found, and the files it wrote.

    Attributes
    ----------
    sweep_dir : Path
        The sweep directory.
    keys : list of str
        The overrides' keys that vary between jobs (``seed`` excepted): the setting columns.
    common : list of str
        Overrides shared by every job whose overrides are known.
    settings : list of Setting
        One per setting, in order of their first job.
    stat_names : list of str
        The statistics' names, in column order.
    jobs : list of Job
        Every job, in job order.
    unstarted : int
        Jobs the sweep planned (``multirun.yaml``) that have no directory yet: pending on a
        cluster, or never launched.
    written : list of Path
        The files written.
    """

    sweep_dir: Path
    keys: list[str]
    common: list[str]
    settings: list[Setting]
    stat_names: list[str]
    jobs: list[Job]
    unstarted: int = 0
    written: list[Path] = field(default_factory=list)


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` (nulls in the metrics stand for NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _mean_of(rows: Iterable[dict[str, Any]], key: str) -> float | None:
    values = [v for v in (finite_number(r.get(key)) for r in rows) if v is not None]
    return sum(values) / len(values) if values else None


def agent_names(jobs: Iterable[Job]) -> list[str]:
    """Agents with a ``<agent>.mean_episode_reward`` in some training line, in order seen."""
    names: dict[str, None] = {}
    for job in jobs:
        for row in job.train:
            for key in row:
                if key.endswith(REWARD_SUFFIX):
                    names.setdefault(key[: -len(REWARD_SUFFIX)], None)
    return list(names)


def solo_agent_names(jobs: Iterable[Job]) -> list[str]:
    """Agents with a ``<agent>.test_accuracy`` in some test line (solo-agent runs)."""
    names: dict[str, None] = {}
    for job in jobs:
        for row in job.test:
            for key in row:
                if key.endswith(SOLO_SUFFIX):
                    names.setdefault(key[: -len(SOLO_SUFFIX)], None)
    return list(names)


def stat_names(agents: Sequence[str], solo_agents: Sequence[str] = ()) -> list[str]:
    """The statistics' names, in column order."""
    return [
        *TEST_STATS,
        "chance_accuracy",
        f"train_accuracy_last{LAST_TRAIN_LINES}",
        *(f"{agent}.reward_last{LAST_TRAIN_LINES}" for agent in agents),
        *(f"{agent}{SOLO_SUFFIX}" for agent in solo_agents),
    ]


def job_stats(
    job: Job, agents: Sequence[str], solo_agents: Sequence[str] = ()
) -> dict[str, float | None]:
    """A finished job's statistics (``None`` where its metrics lack one).

    Final test statistics come from its last test line; chance is the accuracy of always
    giving the test set's majority answer; training statistics are means over its last
    :data:`LAST_TRAIN_LINES` training lines.
    """
    final = job.test[-1] if job.test else {}
    stats: dict[str, float | None] = {
        name: finite_number(final.get(key)) for name, key in TEST_STATS.items()
    }
    share = finite_number(final.get(f"test_{job.share}")) if job.share else None
    stats["chance_accuracy"] = None if share is None else max(share, 1 - share)
    last = job.train[-LAST_TRAIN_LINES:]
    stats[f"train_accuracy_last{LAST_TRAIN_LINES}"] = _mean_of(last, "mean_accuracy")
    for agent in agents:
        stats[f"{agent}.reward_last{LAST_TRAIN_LINES}"] = _mean_of(last, f"{agent}{REWARD_SUFFIX}")
    for agent in solo_agents:
        stats[f"{agent}{SOLO_SUFFIX}"] = finite_number(final.get(f"{agent}{SOLO_SUFFIX}"))
    return stats


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``); NaN where undefined.

    Parameters
    ----------
    values : sequence of float
        One value per seed.

    Returns
    -------
    tuple of float
        ``(mean, std)``: both NaN for no values, the std NaN for one.
    """
    if len(values) == 0:
        return math.nan, math.nan
    array = np.asarray(values, dtype=float)
    std = float(array.std(ddof=1)) if len(array) > 1 else math.nan
    return float(array.mean()), std


def group_settings(jobs: Sequence[Job]) -> tuple[list[str], list[str], list[Setting]]:
    """Varying override keys, common overrides, and the jobs grouped into settings.

    A key varies if some jobs with known overrides differ in its value or in having it at
    all; ``seed`` never makes a setting. Jobs with unknown overrides form a setting of their
    own, valued :data:`UNKNOWN`.
    """
    known = [job for job in jobs if job.overrides is not None]
    values: dict[str, set[str | None]] = {}
    for job in known:
        for word in job.overrides:
            values.setdefault(split_override(word)[0], set())
    for job in known:
        mine = dict(split_override(word) for word in job.overrides)
        for key in values:
            values[key].add(mine.get(key))
    keys = [key for key, seen in values.items() if len(seen) > 1 and key != "seed"]
    common = []
    if known:
        common = [word for word in known[0].overrides if len(values[split_override(word)[0]]) == 1]
    settings: dict[tuple[str, ...], Setting] = {}
    for job in jobs:
        if job.overrides is None:
            key = tuple(UNKNOWN for _ in keys)
        else:
            mine = dict(split_override(word) for word in job.overrides)
            key = tuple(mine.get(k, "") for k in keys)
        settings.setdefault(key, Setting(values=key)).jobs.append(job)
    return keys, common, list(settings.values())


def summarize_jobs(sweep_dir: Path, jobs: list[Job], unstarted: int = 0) -> SweepSummary:
    """Group ``jobs`` into settings and compute each setting's statistics (no files written)."""
    keys, common, settings = group_settings(jobs)
    finished = [job for job in jobs if job.status == FINISHED]
    agents = agent_names(finished or jobs)
    solo_agents = solo_agent_names(finished or jobs)
    names = stat_names(agents, solo_agents)
    for setting in settings:
        per_job = [
            job_stats(job, agents, solo_agents) for job in setting.jobs if job.status == FINISHED
        ]
        for name in names:
            setting.stats[name] = mean_std([s[name] for s in per_job if s[name] is not None])
    return SweepSummary(sweep_dir, keys, common, settings, names, jobs, unstarted)


def curve(series: Sequence[Sequence[tuple[int, float]]]) -> tuple[np.ndarray, ...]:
    """Mean, min and max across seeds at each iteration any seed reached.

    Parameters
    ----------
    series : sequence of sequences of (iteration, value)
        One per seed; seeds may stop at different iterations (running or failed jobs), and
        each iteration averages over the seeds that have it.

    Returns
    -------
    tuple of np.ndarray
        ``(iterations, mean, low, high)``.
    """
    by_iteration: dict[int, list[float]] = {}
    for points in series:
        # The last value of an iteration wins (a metrics file has one per iteration anyway).
        for iteration, value in dict(points).items():
            by_iteration.setdefault(iteration, []).append(value)
    iterations = sorted(by_iteration)
    values = [np.asarray(by_iteration[i]) for i in iterations]
    return (
        np.asarray(iterations, dtype=float),
        np.asarray([v.mean() for v in values]),
        np.asarray([v.min() for v in values]),
        np.asarray([v.max() for v in values]),
    )
