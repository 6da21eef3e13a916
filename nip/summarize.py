"""Entry point: ``python -m nip.summarize SWEEP_DIR [--out DIR]`` summarises a Hydra multirun.

A sweep directory (``outputs/multirun/<date>/<time>``) holds one directory per job
(``0/``, ``1/``, ...). Jobs are grouped into *settings*: the overrides that differ between
jobs, apart from ``seed`` (seeds are replicates of one setting). For each setting this writes
one row of ``summary.csv`` (job counts by status, and mean and sample standard deviation over
the finished seeds of the final test statistics and of the last training iterations), draws
``learning_curves.png`` (train and test accuracy against iteration, one colour per setting)
and prints a table. Jobs may still be running or may have failed: a summary can be made at
any time, and reads nothing that a running job could be half-way through writing (torn
metrics lines are skipped; checkpoints are written atomically).

A job's status is

- ``running``: a process holds its run directory's lock (``<job>/.lock``, see
  :mod:`nip.run_lock`);
- ``finished``: its final checkpoint has ``iteration == trainer.num_iterations`` and
  ``tested`` (the trainer sets both only after the final test line is written);
- ``failed``: anything else (stopped, crashed, refused, or never got as far as writing files).

Checking the lock means taking it, shared and without waiting, for an instant; a job that
starts in that instant waits for it (:data:`nip.run_lock.READER_GRACE_S`).
"""

import csv
import io
import math
import sys
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from nip.checkpointing import atomic_write_bytes, load_checkpoint_file
from nip.cli import ArgumentParser, guarded, program_name
from nip.errors import NipCheckpointError, NipError
from nip.metrics import MetricsFile
from nip.run_lock import is_locked
from nip.stats import share_key

SUMMARY_FILE = "summary.csv"
CURVES_FILE = "learning_curves.png"
# Files only a job directory has (``.hydra/`` is written once a run is accepted).
JOB_MARKERS = (".hydra/overrides.yaml", "metrics.jsonl", "checkpoints")
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

FINISHED, RUNNING, FAILED = "finished", "running", "failed"


class SummaryError(NipError):
    """The sweep directory cannot be summarised (missing, not a sweep, unwritable output)."""


@dataclass
class Job:
    """One job directory of a sweep.

    Attributes
    ----------
    name : str
        The directory's name (the Hydra job number for the default ``hydra.sweep.subdir``).
    path : Path
        The directory.
    overrides : list of str or None
        The job's command-line overrides, or ``None`` if unknown.
    status : str
        ``finished``, ``running`` or ``failed``.
    detail : str
        Why a failed job counts as failed (for the printed report).
    train : list of dict
        Its training lines of ``metrics.jsonl``.
    test : list of dict
        Its test lines of ``metrics.jsonl``.
    config : dict or None
        Its composed config (``.hydra/config.yaml``), or ``None`` if unreadable.
    share : str or None
        The statistic holding its scenario's label-1 share (``isomorphic_fraction`` for GI;
        ``test_`` prefixed in test lines), or ``None`` when its config cannot be read.
    """

    name: str
    path: Path
    overrides: list[str] | None
    status: str = FAILED
    detail: str = ""
    train: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] | None = None
    share: str | None = None
    test: list[dict[str, Any]] = field(default_factory=list)


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


# -- reading a sweep -----------------------------------------------------------------------


def _is_job_dir(path: Path) -> bool:
    # Hydra names job directories by job number (``hydra.sweep.subdir``); a job refused at
    # config time leaves its directory empty, so a number alone makes a job. Other names
    # count only with a job's files (``.submitit/`` and the like have none).
    if not path.is_dir():
        return False
    if path.name.isdigit():
        return True
    return any((path / marker).exists() for marker in JOB_MARKERS)


def _job_order(path: Path) -> tuple[int, int, str]:
    return (0, int(path.name), "") if path.name.isdigit() else (1, 0, path.name)


def find_job_dirs(sweep_dir: Path) -> list[Path]:
    """The job directories of ``sweep_dir``, numbered ones first in numeric order."""
    return sorted((p for p in sweep_dir.iterdir() if _is_job_dir(p)), key=_job_order)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a ``metrics.jsonl``; damaged or torn lines are skipped.

    A running job may be half-way through appending its last line; a summary only displays,
    so a damaged line is left out rather than refused (the trainer refuses it on resume).
    """
    try:
        rows = MetricsFile(path).read(skip_damaged=True)
    except OSError:
        return []
    return [row for row in rows if isinstance(row, dict) and "iteration" in row]


def _is_test_line(row: dict[str, Any]) -> bool:
    return any(key.startswith("test_") for key in row)


def _read_config(job_dir: Path) -> dict[str, Any] | None:
    """The job's composed config (``.hydra/config.yaml``), or ``None`` if unreadable."""
    try:
        config = yaml.safe_load((job_dir / ".hydra" / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return config if isinstance(config, dict) else None


def _num_iterations(config: dict[str, Any] | None) -> int | None:
    """The iterations a job's config asks for (``trainer.num_iterations``, or what its
    trainer counts them in, e.g. ``num_epochs``), if it says."""
    from nip.config.root import GROUP_SCHEMAS

    try:
        schema = GROUP_SCHEMAS["trainer"].get(config["trainer"].get("name"))
        value = config["trainer"][schema.LENGTH_FIELD if schema else "num_iterations"]
    except (KeyError, TypeError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _checkpoint_progress(state_path: Path) -> tuple[int, bool] | None:
    """``(iteration, tested)`` of a checkpoint, or ``None`` if it is missing or unreadable.

    ``metadata.json`` beside it records versions only, so the state file itself is read,
    memory-mapped: the weights are never read from disk.
    """
    if not state_path.is_file():
        return None
    try:
        state = load_checkpoint_file(state_path, mmap=True)
    except NipCheckpointError:
        return None
    iteration, tested = state.get("iteration"), state.get("tested")
    if not isinstance(iteration, int) or not isinstance(tested, bool):
        return None
    return iteration, tested


def job_status(job: Job) -> tuple[str, str]:
    """``(status, detail)`` of a job that is not running, once its metrics are read.

    ``finished`` or ``failed`` (see the module docstring); the detail says how far a failed
    job got.
    """
    if not any(job.path.iterdir()):
        return FAILED, "no files"
    done = f"{job.train[-1]['iteration'] + 1} iterations" if job.train else "no iterations"
    num_iterations = _num_iterations(job.config)
    if num_iterations is None:
        return FAILED, f"{done}, no config: refused or stopped before it started"
    # The final test line comes before the checkpoint that marks the job finished: without
    # it the checkpoint need not be read.
    if not job.test or job.test[-1]["iteration"] != num_iterations:
        return FAILED, f"{done} of {num_iterations}"
    progress = _checkpoint_progress(job.path / "checkpoints" / "state.pt")
    if progress != (num_iterations, True):
        return FAILED, f"{done} of {num_iterations}, tested, final checkpoint missing"
    return FINISHED, ""


def _read_overrides(job_dir: Path) -> list[str] | None:
    try:
        overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(overrides, list):
        return [] if overrides is None else None
    return [str(o) for o in overrides]


def planned_overrides(sweep_dir: Path) -> list[list[str]] | None:
    """Every job's overrides as Hydra's basic sweeper planned them, from ``multirun.yaml``.

    This recovers the overrides of jobs that failed before writing ``.hydra/``. ``None`` if
    the file is missing or from another sweeper. The basic sweeper's own function builds the
    list, so the order is the job numbers' order.
    """
    try:
        config = yaml.safe_load((sweep_dir / "multirun.yaml").read_text())
        hydra = config["hydra"]
        if not str(hydra["sweeper"]["_target_"]).endswith("BasicSweeper"):
            return None
        params = hydra["sweeper"].get("params") or {}
        words = [f"{k}={v}" for k, v in params.items()] + list(hydra["overrides"]["task"] or [])
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parsed = OverridesParser.create().parse_overrides(words)
        batches = BasicSweeper.split_arguments(parsed, None)
    except Exception:  # an unreadable plan only costs the recovery of unknown overrides
        return None
    return [list(job) for batch in batches for job in batch]


def _split(word: str) -> tuple[str, str]:
    """``(key, value)`` of an override; ``+``/``++`` prefixes are not part of the key."""
    key, _, value = word.partition("=")
    return key.lstrip("+"), value


def read_jobs(sweep_dir: Path) -> tuple[list[Job], int]:
    """The sweep's jobs, with metrics and status, and the number of planned jobs not started.

    Raises
    ------
    SummaryError
        If ``sweep_dir`` is not a directory or has no job directories.
    """
    if not sweep_dir.exists():
        raise SummaryError(f"{sweep_dir} does not exist")
    if not sweep_dir.is_dir():
        raise SummaryError(f"{sweep_dir} is not a directory")
    paths = find_job_dirs(sweep_dir)
    if not paths:
        hint = (
            " (it is a single run's directory: pass the sweep directory above it)"
            if any((sweep_dir / marker).exists() for marker in JOB_MARKERS)
            else ""
        )
        raise SummaryError(
            f"no jobs in {sweep_dir}{hint}; a sweep directory holds one directory per job "
            f"(0/, 1/, ...), e.g. outputs/multirun/<date>/<time>"
        )
    jobs = [Job(name=p.name, path=p, overrides=_read_overrides(p)) for p in paths]
    plan = planned_overrides(sweep_dir)
    # The plan is trusted only if it matches every job's recorded overrides.
    if plan is not None and all(
        job.overrides is None
        or (
            job.name.isdigit()
            and int(job.name) < len(plan)
            and plan[int(job.name)] == job.overrides
        )
        for job in jobs
    ):
        for job in jobs:
            if job.overrides is None and job.name.isdigit() and int(job.name) < len(plan):
                job.overrides = plan[int(job.name)]
        numbered = {int(job.name) for job in jobs if job.name.isdigit()}
        unstarted = len(set(range(len(plan))) - numbered)
    else:
        unstarted = 0
    for job in jobs:
        # The lock first: a job not running then cannot change its files while they are
        # read, and one that finishes in between still counts as running, not as failed.
        running = is_locked(job.path)
        rows = read_metrics(job.path / "metrics.jsonl")
        job.test = [r for r in rows if _is_test_line(r)]
        job.train = [r for r in rows if not _is_test_line(r) and "mean_accuracy" in r]
        job.config = _read_config(job.path)
        job.status, job.detail = (RUNNING, "") if running else job_status(job)
        job.share = _share_key(job.config)
    return jobs, unstarted


def _share_key(config: dict[str, Any] | None) -> str | None:
    """The label-1 share statistic of a job's scenario (from its composed config)."""
    from nip.factory import scenario_label_names

    try:
        names = scenario_label_names(config["scenario"]["name"])
    except (KeyError, TypeError):
        return None
    return None if names is None else share_key(names)


# -- statistics ----------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` (nulls in the metrics stand for NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _mean_of(rows: Iterable[dict[str, Any]], key: str) -> float | None:
    values = [v for v in (_number(r.get(key)) for r in rows) if v is not None]
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
        name: _number(final.get(key)) for name, key in TEST_STATS.items()
    }
    share = _number(final.get(f"test_{job.share}")) if job.share else None
    stats["chance_accuracy"] = None if share is None else max(share, 1 - share)
    last = job.train[-LAST_TRAIN_LINES:]
    stats[f"train_accuracy_last{LAST_TRAIN_LINES}"] = _mean_of(last, "mean_accuracy")
    for agent in agents:
        stats[f"{agent}.reward_last{LAST_TRAIN_LINES}"] = _mean_of(last, f"{agent}{REWARD_SUFFIX}")
    for agent in solo_agents:
        stats[f"{agent}{SOLO_SUFFIX}"] = _number(final.get(f"{agent}{SOLO_SUFFIX}"))
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
            values.setdefault(_split(word)[0], set())
    for job in known:
        mine = dict(_split(word) for word in job.overrides)
        for key in values:
            values[key].add(mine.get(key))
    keys = [key for key, seen in values.items() if len(seen) > 1 and key != "seed"]
    common = []
    if known:
        common = [word for word in known[0].overrides if len(values[_split(word)[0]]) == 1]
    settings: dict[tuple[str, ...], Setting] = {}
    for job in jobs:
        if job.overrides is None:
            key = tuple(UNKNOWN for _ in keys)
        else:
            mine = dict(_split(word) for word in job.overrides)
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


# -- learning curves -----------------------------------------------------------------------


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


def _points(rows: Iterable[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    points = [(row["iteration"], _number(row.get(key))) for row in rows]
    return [(i, v) for i, v in points if v is not None]


def _chance_level(jobs: Iterable[Job], rows_of: str, prefix: str) -> float | None:
    """Chance over the jobs' rows, from each job's own label-1 share statistic."""
    shares = [
        v
        for job in jobs
        if job.share
        for _, v in _points(getattr(job, rows_of), f"{prefix}{job.share}")
    ]
    if not shares:
        return None
    share = sum(shares) / len(shares)
    return max(share, 1 - share)


def setting_label(keys: Sequence[str], setting: Setting) -> str:
    """``key=value, ...`` of a setting (``all jobs`` when nothing varies)."""
    return ", ".join(f"{k}={v}" for k, v in zip(keys, setting.values, strict=True)) or "all jobs"


def plot_learning_curves(summary: SweepSummary, out_path: Path) -> Path | None:
    """Write :func:`learning_curves_figure` as a PNG.

    Returns
    -------
    Path or None
        ``out_path``, or ``None`` when there is nothing to plot.
    """
    fig = learning_curves_figure(summary)
    if fig is None:
        return None
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write(out_path, buffer.getvalue())
    return out_path


def learning_curves_figure(summary: SweepSummary):
    """Train and test accuracy against iteration, one colour per setting.

    Each setting's line is the mean over its seeds (of every status: running and stopped
    jobs show how far they got), shaded from the lowest to the highest seed; the dashed line
    is chance (one per setting, in its colour, where the settings' test sets differ).

    Returns
    -------
    matplotlib.figure.Figure or None
        ``None`` when no job has a training line with the verifier's accuracy yet.
    """
    # Verifier-accuracy curves: runs without them (solo-agent runs) have their own plots.
    if not any("mean_accuracy" in row for job in summary.jobs for row in job.train):
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display on a cluster node
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), sharex=True, sharey=True)
    colours = plt.get_cmap("tab10" if len(summary.settings) <= 10 else "tab20")
    panels = (
        (axes[0], "train", "mean_accuracy", "", "-"),
        (axes[1], "test", "test_mean_accuracy", "test_", "o-"),
    )
    for ax, rows_of, key, prefix, style in panels:
        chances = []
        for index, setting in enumerate(summary.settings):
            colour = colours(index % colours.N)
            series = [_points(getattr(job, rows_of), key) for job in setting.jobs]
            series = [s for s in series if s]
            if series:
                x, mean, low, high = curve(series)
                seeds = f"{len(series)} seed{'s' if len(series) != 1 else ''}"
                label = f"{setting_label(summary.keys, setting)} ({seeds})"
                # A short curve (a test every few iterations, a job just started) needs
                # markers to be seen at all.
                marker = "o" if style == "o-" or len(x) < 20 else None
                ax.plot(x, mean, "-", marker=marker, color=colour, label=label, markersize=3)
                ax.fill_between(x, low, high, color=colour, alpha=0.2, linewidth=0)
            chances.append((colour, _chance_level(setting.jobs, rows_of, prefix)))
        levels = [level for _, level in chances if level is not None]
        if levels and max(levels) - min(levels) < 0.01:
            ax.axhline(sum(levels) / len(levels), ls="--", color="gray", label="chance")
        else:
            for number, (colour, level) in enumerate(c for c in chances if c[1] is not None):
                ax.axhline(level, ls="--", color=colour, label="chance" if number == 0 else None)
        ax.set(xlabel="iteration", title=f"{rows_of.capitalize()} accuracy", ylim=(-0.03, 1.03))
    axes[0].set_ylabel("verifier accuracy")
    for ax in axes:  # each panel's chance lines differ (train batches, test set)
        ax.legend(fontsize="small", loc="best")
    fig.suptitle(f"{summary.sweep_dir} (mean over seeds; shaded: min to max)", fontsize="small")
    fig.tight_layout()
    return fig


# -- output --------------------------------------------------------------------------------


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a reader (a notebook polling the summary) sees
    the old file or the new one, never a half-written one.

    Raises
    ------
    SummaryError
        If the file cannot be written.
    """
    try:
        atomic_write_bytes(path, data)
    except OSError as e:
        raise SummaryError(f"cannot write {path}: {e.strerror or e}") from None
    except NipError as e:  # a full disk, reported by the writer in one line
        raise SummaryError(f"cannot write {path}: {e}") from None


def _csv_number(value: float) -> str:
    # Empty, not "nan": spreadsheets and pandas both read an empty cell as missing.
    return "" if math.isnan(value) else format(value, ".12g")


def summary_csv(summary: SweepSummary) -> str:
    """``summary.csv``'s text: one row per setting; see :func:`summarize`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    stat_columns = [f"{name}_{part}" for name in summary.stat_names for part in ("mean", "std")]
    writer.writerow([*summary.keys, "seeds", FINISHED, RUNNING, FAILED, *stat_columns])
    for setting in summary.settings:
        stats = [_csv_number(value) for name in summary.stat_names for value in setting.stats[name]]
        counts = [setting.count(status) for status in (FINISHED, RUNNING, FAILED)]
        writer.writerow([*setting.values, len(setting.jobs), *counts, *stats])
    return out.getvalue()


def _mean_pm_std(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} ± {std:.3f}"


def table_cells(summary: SweepSummary) -> tuple[list[str], list[list[str]]]:
    """The table's header and rows: settings as rows, ``mean ± std`` over finished seeds
    as cells (also the sweep report's table)."""
    shown = {
        "test acc": "test_accuracy",
        "chance": "chance_accuracy",
        f"train acc (last {LAST_TRAIN_LINES})": f"train_accuracy_last{LAST_TRAIN_LINES}",
        "ran out of rounds": "test_terminated_fraction",
        "episode length": "test_episode_length",
    }
    header = [*summary.keys, "seeds", "finished/running/failed", *shown]
    rows = [
        [
            *setting.values,
            str(len(setting.jobs)),
            "/".join(str(setting.count(s)) for s in (FINISHED, RUNNING, FAILED)),
            *(_mean_pm_std(*setting.stats[name]) for name in shown.values()),
        ]
        for setting in summary.settings
    ]
    return header, rows


def format_table(summary: SweepSummary) -> str:
    """The printed table (see :func:`table_cells`), columns aligned."""
    header, rows = table_cells(summary)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    numeric_from = len(summary.keys)  # counts and statistics are right-aligned
    lines = []
    for row in [header, *rows]:
        cells = [
            cell.rjust(width) if i >= numeric_from else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def format_report(summary: SweepSummary) -> str:
    """What the command prints: the sweep, common overrides, the table, failures, files."""
    counts = {s: sum(job.status == s for job in summary.jobs) for s in (FINISHED, RUNNING, FAILED)}
    lines = [
        f"sweep {summary.sweep_dir}: {len(summary.jobs)} jobs "
        f"({counts[FINISHED]} finished, {counts[RUNNING]} running, {counts[FAILED]} failed)"
    ]
    if summary.unstarted:
        lines.append(f"{summary.unstarted} planned job(s) have no directory yet (pending?)")
    # One override per line would bury the table under a long command line; wrap instead.
    common = " ".join(summary.common) or "(none)"
    lines += textwrap.wrap(
        common,
        width=100,
        initial_indent="common overrides: ",
        subsequent_indent="  ",
        break_on_hyphens=False,
        break_long_words=False,
    )
    lines += ["", format_table(summary), ""]
    lines.append("mean ± sample std over finished seeds; test statistics are the final test's")
    failed = [f"{job.name} ({job.detail})" for job in summary.jobs if job.status == FAILED]
    if failed:
        lines.append(f"failed jobs: {', '.join(failed)}")
    lines += [f"wrote {path}" for path in summary.written]
    return "\n".join(lines)


def summarize(sweep_dir: Path, out_dir: Path | None = None) -> SweepSummary:
    """Summarise a sweep: write ``summary.csv`` and ``learning_curves.png``.

    Parameters
    ----------
    sweep_dir : Path
        The multirun's directory (``outputs/multirun/<date>/<time>``).
    out_dir : Path, optional
        Where to write the files (created if needed); default ``sweep_dir``.

    Returns
    -------
    SweepSummary
        The settings, their statistics and the paths written.

    Raises
    ------
    SummaryError
        If ``sweep_dir`` is not a sweep directory or the files cannot be written.

    Notes
    -----
    ``summary.csv`` has one row per setting: the varying overrides' keys, ``seeds`` (the
    setting's jobs), how many are ``finished``, ``running`` and ``failed``, then
    ``<stat>_mean`` and ``<stat>_std`` over the finished seeds of each statistic of
    :func:`stat_names`: the final test's ``test_accuracy``, ``test_terminated_fraction``,
    ``test_accept_fraction``, ``test_reject_fraction``, ``test_episode_length``,
    ``chance_accuracy``, and the means over the last 10 training iterations
    ``train_accuracy_last10`` and ``<agent>.reward_last10``. Missing values are empty.
    """
    sweep_dir = Path(sweep_dir).expanduser()
    jobs, unstarted = read_jobs(sweep_dir)
    summary = summarize_jobs(sweep_dir, jobs, unstarted)
    out_dir = sweep_dir if out_dir is None else Path(out_dir).expanduser()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SummaryError(f"cannot create {out_dir}: {e.strerror or e}") from None
    csv_path = out_dir / SUMMARY_FILE
    atomic_write(csv_path, summary_csv(summary).encode())
    summary.written.append(csv_path)
    curves = plot_learning_curves(summary, out_dir / CURVES_FILE)
    if curves is not None:
        summary.written.append(curves)
    return summary


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m nip.summarize SWEEP_DIR [--out DIR]`` (or ``nip-summarize``).

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 once the summary is written. Mistakes (bad arguments, a missing or non-sweep
        directory, an unwritable output) do not return: they print one ``nip: error:`` line
        and raise ``SystemExit(2)``. A console script's ``sys.exit(main())`` and
        ``python -m nip.summarize`` thus behave alike.
    """
    parser = ArgumentParser(
        prog=program_name("nip-summarize", "nip.summarize"),
        synopsis="SWEEP_DIR [--out DIR]",
        description="Summarise a Hydra multirun of nip: one row per setting (the overrides "
        "that differ between jobs, seeds aside), mean ± std over finished seeds, a CSV and "
        "learning curves.",
    )
    parser.add_argument(
        "sweep_dir",
        type=Path,
        metavar="SWEEP_DIR",
        help="the sweep directory, e.g. outputs/multirun/<date>/<time>",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"directory for {SUMMARY_FILE} and {CURVES_FILE} (default: the sweep directory)",
    )
    args = parser.parse_args(argv)
    summary = guarded(lambda: summarize(args.sweep_dir, args.out))
    print(format_report(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
