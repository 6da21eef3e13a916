"""Entry point: ``python -m nip.report DIR [--out FILE]``: one page on a run or a sweep.

For a run directory, ``report.html`` holds the configuration that differs from the
defaults (and the overrides as typed), the learning curves (train and test accuracy against
chance, how episodes end, each agent's return, the entropies of messages and decisions,
episode length), the latest test's figures overall, by label and by stratum (GI: WL score),
and pictures of a few test episodes (those of :mod:`nip.visualise`). For a sweep directory,
the table and learning curves of :mod:`nip.summarize`. The page is one file: pictures are
embedded, it has no scripts, and it opens offline wherever it is copied.
"""

import html
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from nip.checkpointing import atomic_write_bytes, resolve_checkpoint_path
from nip.cli import CONFIG_DIR, ArgumentParser, guarded, program_name
from nip.episodes import figure_png
from nip.errors import NipError
from nip.metrics import MetricsFile
from nip.playback import load_trained_run
from nip.plotting import diagnostics_figure, metrics_figure, solo_metrics_figure
from nip.stats import chance_accuracy, share_key
from nip.summarize import learning_curves_figure as sweep_curves_figure
from nip.summarize import table_cells
from nip.sweep_jobs import FAILED, find_job_dirs, read_jobs
from nip.sweep_stats import summarize_jobs
from nip.visualise import VisualiseArgs, draw_episodes, episode_html, png_img

REPORT_FILE = "report.html"
# Shown for a key the default config does not have (another option of its group).
ABSENT = "(absent)"
STYLE = (
    "body{font-family:sans-serif;margin:1.5em;max-width:1250px;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
    "td,th{border:1px solid #ccc;padding:0.2em 0.6em;text-align:left}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}"
    "img{max-width:100%}figure{margin:1.5em 0}pre{font-size:0.85em;white-space:pre-wrap}"
    "code{font-size:0.9em}"
)


class ReportError(NipError):
    """The directory is neither a run nor a sweep, or the report cannot be written."""


# -- pieces of a page ----------------------------------------------------------------------


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f'<td class="n">{value:.3f}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="n">{value}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def html_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A ``<table>``: floats to three decimals, numbers right-aligned, text escaped."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(f"<tr>{''.join(_cell(v) for v in row)}</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def figure_img(figure, alt: str) -> str:
    """A matplotlib figure as an embedded PNG (closing it), or a note when there is none."""
    if figure is None:
        return "<p>No training iterations yet: nothing to plot.</p>"
    return f"<figure>{png_img(figure_png(figure), alt)}</figure>"


def page(title: str, sections: list[tuple[str, str]]) -> str:
    """The whole document: a heading, then each ``(heading, html)`` section."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    for heading, body in sections:
        parts += [f"<section><h2>{esc(heading)}</h2>", body, "</section>"]
    parts.append("</body></html>")
    return "\n".join(parts)


# -- the configuration ---------------------------------------------------------------------


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists are values, as Hydra overrides see them)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def default_config() -> dict[str, Any]:
    """The configuration ``python -m nip.run`` composes with no overrides."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from nip.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        config = compose("config")
    return OmegaConf.to_container(config, resolve=False)


def config_differences(config: dict, defaults: dict) -> list[tuple[str, Any, Any]]:
    """``(key, default, value)`` of every leaf of ``config`` that differs from ``defaults``
    (:data:`ABSENT` as the default of a key the defaults lack), in ``config``'s order."""
    ours, theirs = flatten(config), flatten(defaults)
    return [
        (key, theirs.get(key, ABSENT), value)
        for key, value in ours.items()
        if key not in theirs or theirs[key] != value
    ]


def config_section(run_dir: Path) -> str:
    """The overrides as typed, and the composed config's differences from the defaults."""
    hydra_dir = run_dir / ".hydra"
    parts = []
    try:
        overrides = yaml.safe_load((hydra_dir / "overrides.yaml").read_text()) or []
        config = yaml.safe_load((hydra_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError) as e:
        return f"<p>The run's configuration cannot be read ({html.escape(str(e))}).</p>"
    typed = " ".join(overrides) or "(none)"
    parts.append(f"<p>Command-line overrides: <code>{html.escape(typed)}</code></p>")
    differences = config_differences(config, default_config())
    if differences:
        parts.append(html_table(["key", "default", "this run"], differences))
    else:
        parts.append("<p>Every value is the default.</p>")
    return "\n".join(parts)


# -- a run ---------------------------------------------------------------------------------


def latest_test(metrics_path: Path, share: str) -> dict[str, Any] | None:
    """The run's last test line (the final test once the run finished), or ``None``."""
    rows = MetricsFile(metrics_path).read(skip_damaged=True)
    tests = [row for row in rows if f"test_{share}" in row]
    return tests[-1] if tests else None


def test_section(test: dict[str, Any] | None, run, state_line: str) -> str:
    """Overall, per-label and per-stratum test figures of the run's latest test line."""
    if test is None:
        return "<p>The run has not been tested yet.</p>"
    scenario, dataset = run.setup.scenario, run.setup.dataset
    agents = run.setup.protocol_handler.agent_names
    share = test[share_key(scenario.label_names, "test_")]
    overall = [
        ("accuracy (decided rightly)", test["test_mean_accuracy"]),
        ("chance (always the majority label)", chance_accuracy(share)),
        ("ran out of rounds", test["test_terminated_fraction"]),
        ("accepted", test["test_accept_fraction"]),
        ("rejected", test["test_reject_fraction"]),
        ("mean episode length (rounds)", test["test_mean_episode_length"]),
        ("episodes", int(test["test_num_episodes"])),
    ]
    overall += [
        (f"{agent}: mean episode return", test[f"{agent}.test_mean_episode_reward"])
        for agent in agents
        if f"{agent}.test_mean_episode_reward" in test
    ]
    how = "greedy actions" if test.get("test_greedy") else "sampled actions"
    parts = [
        f"<p>After {test['iteration']} iterations ({state_line}); {how}.</p>",
        html_table(["statistic", "value"], overall),
    ]
    num = int(test["test_num_episodes"])
    labels = [
        (name, round(num * (share if label == 1 else 1 - share)), test[f"test_accuracy_{name}"])
        for label, name in enumerate(scenario.label_names)
        if f"test_accuracy_{name}" in test
    ]
    parts += ["<h3>By label</h3>", html_table(["label", "episodes", "accuracy"], labels)]
    for name, values in scenario.strata(dataset).items():
        prefix = f"test_accuracy_{name}_"
        found = sorted((int(k[len(prefix) :]), v) for k, v in test.items() if k.startswith(prefix))
        if found:
            rows = [(value, int((values == value).sum()), acc) for value, acc in found]
            parts += [
                f"<h3>By {html.escape(name)}</h3>",
                html_table([name, "examples", "accuracy"], rows),
            ]
    return "\n".join(parts)


def solo_test_section(test: dict[str, Any] | None, agents: Sequence[str], share: str) -> str:
    """Each solo agent's test accuracy: overall, by label and by stratum, against chance."""
    if test is None:
        return "<p>The run has not been tested yet.</p>"
    prefix = ".test_accuracy"
    # Columns in the order the trainer logged them, from the first agent that has them.
    columns = [
        key.split(".", 1)[1][len("test_") :]
        for key in test
        if key.startswith(f"{agents[0]}{prefix}")
    ]
    rows = [(a, *(test.get(f"{a}.test_{c}", "-") for c in columns)) for a in agents]
    chance = chance_accuracy(test[f"test_{share}"])
    return "\n".join(
        [
            f"<p>{int(test['test_num_examples'])} test examples; chance (always the majority "
            f"label) {chance:.3f}.</p>",
            html_table(["agent", *columns], rows),
        ]
    )


def run_report(run_dir: Path, num_episodes: int, seed: int, device: str) -> str:
    """The page of one run (see the module's description)."""
    checkpoint_path = resolve_checkpoint_path(run_dir)
    run = load_trained_run(checkpoint_path, device, None, "test")
    hp, state = run.hp, run.state
    agents = run.setup.protocol_handler.agent_names
    share = share_key(run.setup.scenario.label_names)
    metrics_path = run_dir / "metrics.jsonl"
    # A solo run's iterations are its epochs.
    unit = "epochs" if run.solo else "iterations"
    planned = hp.trainer.num_epochs if run.solo else hp.trainer.num_iterations
    done = state["iteration"]
    finished = done == planned and state.get("tested", False)
    state_line = "finished" if finished else f"not finished: {done} of {planned} {unit}"
    title = (
        f"nip run {run_dir.name}: {hp.scenario.name}, protocol {hp.protocol.name}, "
        f"trainer {hp.trainer.name}"
    )
    sections = [("Configuration", config_section(run_dir))]
    test = latest_test(metrics_path, share)
    if run.solo:
        curves = figure_img(solo_metrics_figure(metrics_path, agents, share), "solo curves")
        sections += [
            ("Learning curves", curves),
            (
                "Test",
                f"<p>After {done} epochs ({state_line}).</p>"
                + solo_test_section(test, agents, share),
            ),
            ("Episodes", "<p>A solo-agent run plays no episodes.</p>"),
        ]
        return page(title, sections)
    curves = figure_img(metrics_figure(metrics_path, agents, share), "learning curves")
    diagnostics = figure_img(diagnostics_figure(metrics_path, agents), "entropies and lengths")
    args = VisualiseArgs(checkpoint=str(checkpoint_path), num_episodes=num_episodes, seed=seed)
    summary, pictures = draw_episodes(run, args)
    episodes = "\n".join(
        episode_html(row, name, png)
        for row, (name, png) in zip(summary["episodes"], pictures, strict=True)
    )
    how = f"sampled actions, seed {seed}; python -m nip.visualise draws more"
    sections += [
        ("Learning curves", curves + diagnostics),
        ("Test", test_section(test, run, state_line)),
        (f"Episodes ({len(pictures)} of the test split, {how})", episodes),
    ]
    return page(title, sections)


# -- a sweep -------------------------------------------------------------------------------


def sweep_report(sweep_dir: Path) -> str:
    """The page of a sweep: :mod:`nip.summarize`'s table and learning curves."""
    jobs, unstarted = read_jobs(sweep_dir)
    summary = summarize_jobs(sweep_dir, jobs, unstarted)
    header, rows = table_cells(summary)
    common = " ".join(summary.common) or "(none)"
    parts = [
        f"<p>{len(jobs)} jobs; {unstarted} planned but not started. Common overrides: "
        f"<code>{html.escape(common)}</code></p>",
        html_table(header, rows),
        "<p>mean ± sample std over finished seeds; test statistics are the final test's.</p>",
    ]
    failed = [(job.name, job.detail) for job in jobs if job.status == FAILED]
    if failed:
        parts += ["<h3>Failed jobs</h3>", html_table(["job", "why"], failed)]
    curves = figure_img(sweep_curves_figure(summary), "learning curves of the settings")
    title = f"nip sweep {sweep_dir}"
    return page(title, [("Settings", "\n".join(parts)), ("Learning curves", curves)])


# -- the command ---------------------------------------------------------------------------


def is_run_dir(path: Path) -> bool:
    """A run directory holds its composed config or its metrics."""
    return (path / ".hydra" / "config.yaml").is_file() or (path / "metrics.jsonl").is_file()


def check_out_file(out: Path) -> None:
    """Fail before any work if ``out`` cannot be written (nothing is created here)."""
    if out.is_dir():
        raise ReportError(f"--out {out} is a directory; give a file name")
    existing = out.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ReportError(
            f"--out {out}: cannot write there ({existing} is not a writable directory)"
        )


def report(
    directory: Path,
    out: Path | None = None,
    num_episodes: int = 4,
    seed: int = 0,
    device: str = "auto",
) -> Path:
    """Write the report of a run or sweep directory; returns the file written.

    Raises
    ------
    ReportError, NipCheckpointError, NipConfigError
        A directory that is neither a run nor a sweep, a run without a checkpoint, a
        damaged checkpoint, ``num_episodes < 1``, or an unwritable ``out``. Nothing is
        written then.
    """
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise ReportError(f"{directory} is not a directory")
    if num_episodes < 1:
        raise ReportError(f"--episodes must be at least 1, got {num_episodes}")
    out = directory / REPORT_FILE if out is None else Path(out).expanduser()
    check_out_file(out)
    if is_run_dir(directory):
        text = run_report(directory, num_episodes, seed, device)
    elif find_job_dirs(directory):
        text = sweep_report(directory)
    else:
        raise ReportError(
            f"{directory} is neither a run directory (.hydra/config.yaml, metrics.jsonl) "
            "nor a sweep directory (job directories 0/, 1/, ...)"
        )
    try:
        atomic_write_bytes(out, text.encode("utf-8"))
    except OSError as e:
        raise ReportError(f"cannot write {out}: {e.strerror or e}") from None
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m nip.report DIR [--out FILE] [--episodes N] [--seed S]``.

    Returns
    -------
    int
        0 once the page is written; mistakes print one ``nip: error:`` line and exit 2.
    """
    parser = ArgumentParser(
        prog=program_name("nip-report", "nip.report"),
        synopsis="DIR [--out FILE] [--episodes N] [--seed S] [--device D]",
        description="Write one self-contained HTML page on a nip run or sweep directory.",
    )
    parser.add_argument("directory", type=Path, metavar="DIR", help="a run or sweep directory")
    parser.add_argument(
        "--out", type=Path, default=None, metavar="FILE", help=f"default: DIR/{REPORT_FILE}"
    )
    parser.add_argument(
        "--episodes", type=int, default=4, metavar="N", help="episode pictures (default 4)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, metavar="S", help="seed of the episodes (default 0)"
    )
    parser.add_argument("--device", default="auto", metavar="D", help="auto, cpu or cuda")
    args = parser.parse_args(argv)
    written = guarded(
        lambda: report(args.directory, args.out, args.episodes, args.seed, args.device)
    )
    print(f"report written to {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
