"""Reading a sweep directory: its jobs, their overrides, metrics, configs and status.

A job's status is

- ``running``: a process holds its run directory's lock (``<job>/.lock``, see
  :mod:`nip.run_lock`);
- ``finished``: its final checkpoint has ``iteration == trainer.num_iterations`` and
  ``tested`` (the trainer sets both only after the final test line is written);
- ``failed``: anything else (stopped, crashed, refused, or never got as far as writing files).

Checking the lock means taking it, shared and without waiting, for an instant; a job that
starts in that instant waits for it (:data:`nip.run_lock.READER_GRACE_S`).
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nip.checkpointing import load_checkpoint_file
from nip.errors import NipCheckpointError, NipError
from nip.metrics import MetricsFile
from nip.run_lock import is_locked
from nip.stats import share_key

# Files only a job directory has (``.hydra/`` is written once a run is accepted).
JOB_MARKERS = (".hydra/overrides.yaml", "metrics.jsonl", "checkpoints")
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


def split_override(word: str) -> tuple[str, str]:
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
