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

A job's status (``finished``, ``running``, ``failed``) is defined in :mod:`nip.sweep_jobs`.
"""

import csv
import io
import math
import sys
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from nip.checkpointing import atomic_write_bytes
from nip.cli import ArgumentParser, guarded, program_name
from nip.errors import NipError
from nip.sweep_jobs import FAILED, FINISHED, RUNNING, Job, SummaryError, read_jobs
from nip.sweep_stats import (
    LAST_TRAIN_LINES,
    Setting,
    SweepSummary,
    curve,
    finite_number,
    summarize_jobs,
)

SUMMARY_FILE = "summary.csv"
CURVES_FILE = "learning_curves.png"


def _points(rows: Iterable[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    points = [(row["iteration"], finite_number(row.get(key))) for row in rows]
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
