"""Entry point: ``python -m nip.visualise checkpoint=<run dir>``: pictures of episodes.

Plays seeded episodes of a trained run on its test split (or ``dataset.split=train``, or a
dataset file ``dataset.path=...``), sampling actions as the test does (``greedy=true``: each
agent's most likely action), and writes one PNG per episode, ``episodes.json`` and a
self-contained ``index.html`` (pictures embedded, nothing fetched from the network) into
``<run dir>/visualisations/`` (or ``output=``). GI: both graphs side by side, the nodes each
agent pointed at ringed in the agent's colour with the round; images: the image once per
round with the pointed-at latent pixels tinted. ``only=wrong|right|accepted|rejected|ran_out``
keeps episodes of that outcome, searching one pass over the dataset.
"""

import base64
import html
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from nip.checkpointing import resolve_checkpoint_path
from nip.cli import guarded, parse_args
from nip.episodes import DECISIONS, Episode, figure_png
from nip.errors import NipConfigError
from nip.evaluation import OUTCOMES, record_episodes
from nip.factory import MAX_EVAL_ENVS
from nip.playback import (
    PlayArgs,
    TrainedRun,
    dataset_choice,
    load_trained_run,
    run_directory,
)
from nip.utils.seeding import derive_seed, fork_rng

# Episodes are searched for in batches of at most this many (a filter may need many).
SEARCH_BATCH = 256


@dataclass
class VisualiseArgs(PlayArgs):
    """Arguments of ``nip.visualise``: those of :class:`nip.playback.PlayArgs` (``dataset``
    defaults to the test split; ``output``: the directory, default
    ``<run dir>/visualisations``) and

    Attributes
    ----------
    num_episodes : int
        How many episodes to draw (at most one per example of the dataset).
    only : str or None
        Keep only episodes that are ``wrong`` (the verifier did not decide rightly: decided
        wrongly or never), ``right``, ``accepted``, ``rejected`` or ``ran_out`` (of rounds).
    """

    num_episodes: int = 8
    only: str | None = None


def check_output(output: Path) -> None:
    """Fail before playing if ``output`` cannot become a directory we write into (nothing is
    created here: a refused command leaves no trace).

    Raises
    ------
    NipConfigError
    """
    if output.exists() and not output.is_dir():
        raise NipConfigError(f"output={output} is a file; give a directory")
    existing = output
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise NipConfigError(f"output={output}: cannot write there ({existing} is not a directory)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise NipConfigError(f"output={output}: cannot write there (permission denied)")


def select_episodes(env, policy, num_examples: int, args: VisualiseArgs, strata):
    """Play through the dataset in order until ``args.num_episodes`` episodes are of outcome
    ``args.only`` (one pass at most).

    Returns
    -------
    episodes : list of Episode
    played : int
        How many episodes were played to find them.
    """
    wanted = min(args.num_episodes, num_examples) if args.only is None else args.num_episodes
    base = env.base_env
    found: list[Episode] = []
    played = 0
    while len(found) < wanted and played < num_examples:
        count = min(env.batch_size[0], num_examples - played)
        results, pointed = record_episodes(env, policy, count, greedy=args.greedy)
        played += count
        keep = results.outcome(args.only) if args.only else torch.ones(count, dtype=torch.bool)
        picked = keep.nonzero()[:, 0][: wanted - len(found)]
        recording = (results, pointed, base.examples(results.datapoint_id))
        found += [Episode.recorded(recording, i, strata, base.item_shape) for i in picked.tolist()]
    return found, played


def transcript(episode: Episode, scenario, agent_names, channel_names) -> list[str]:
    """Per round, channel and speaking agent, the items it pointed at in the scenario's words."""
    several = len(channel_names) > 1
    return [
        f"round {r}: {agent_names[a]}{f' @{channel_names[c]}' if several else ''} -> "
        + ", ".join(scenario.describe_message(message))
        for r, c, a, message in episode.spoken()
    ]


def draw_episodes(run: TrainedRun, args: VisualiseArgs) -> tuple[dict, list[tuple[str, bytes]]]:
    """Play and draw the episodes ``args`` asks for on the data ``run`` was built with.

    Returns
    -------
    summary : dict
        What ``episodes.json`` holds, ``dataset`` left for the caller to name.
    pictures : list of (str, bytes)
        Each episode's file name and PNG, in the order of ``summary["episodes"]``.

    Raises
    ------
    NipConfigError
        For a solo-agent run, or when no episode passes the filter.
    """
    run.refuse_solo("its agents classify alone and play no episodes, so there is nothing to draw")
    scenario, dataset = run.setup.scenario, run.setup.dataset
    batch = min(len(dataset), SEARCH_BATCH if args.only else args.num_episodes, MAX_EVAL_ENVS)
    env = run.environment(batch, args.seed)
    strata = {k: v.cpu() for k, v in scenario.strata(dataset).items()}
    with fork_rng(run.device):
        torch.manual_seed(derive_seed(args.seed, "visualise"))
        episodes, played = select_episodes(env, run.policy_operator(), len(dataset), args, strata)
    if not episodes:
        raise NipConfigError(
            f"no episode of the {played} played (one per example) is {args.only}; "
            "nothing was written"
        )
    handler = run.setup.protocol_handler
    agents, channels = handler.agent_names, handler.channel_names
    pictures, rows = [], []
    for i, episode in enumerate(episodes):
        name = f"episode_{i:03d}_datapoint_{episode.datapoint_id}.png"
        pictures.append((name, figure_png(scenario.episode_figure(episode, agents, channels))))
        rows.append(
            {
                "picture": name,
                "datapoint_id": episode.datapoint_id,
                "label": scenario.label_names[episode.label],
                "decision": DECISIONS[episode.decision],
                "right": episode.right,
                "ran_out": episode.terminated,
                "length": episode.length,
                "returns": dict(zip(agents, episode.returns.tolist(), strict=True)),
                "strata": episode.strata,
                "transcript": transcript(episode, scenario, agents, channels),
            }
        )
    summary = {
        "checkpoint": str(run.checkpoint_path),
        "iteration": run.state["iteration"],
        "dataset": "",
        "protocol": run.hp.protocol.name,
        "agents": list(agents),
        "only": args.only,
        "seed": args.seed,
        "greedy": args.greedy,
        "num_played": played,
        "episodes": rows,
    }
    return summary, pictures


def visualise(args: VisualiseArgs) -> dict:
    """Draw the episodes; returns the summary written to ``episodes.json``.

    Raises
    ------
    NipConfigError
        For arguments that cannot work, a solo-agent checkpoint, an unwritable output, or
        when no episode passes the filter.
    NipCheckpointError, NipDataError
        For a missing or damaged checkpoint, or a dataset file not of the run's scenario.
    """
    if args.num_episodes < 1:
        raise NipConfigError(f"num_episodes must be at least 1, got {args.num_episodes}")
    if args.only is not None and args.only not in OUTCOMES:
        raise NipConfigError(f"only={args.only!r}: choose one of {', '.join(OUTCOMES)}")
    path, split = dataset_choice(args.dataset, default_split="test")
    checkpoint_path = resolve_checkpoint_path(args.checkpoint)
    output = (
        Path(args.output).expanduser()
        if args.output
        else run_directory(checkpoint_path) / "visualisations"
    )
    check_output(output)
    run = load_trained_run(checkpoint_path, args.device, path, split)
    summary, pictures = draw_episodes(run, args)
    summary["dataset"] = str(path) if path else f"split={split}"
    page = html_page(summary, pictures)
    try:
        output.mkdir(parents=True, exist_ok=True)
        for name, png in pictures:
            (output / name).write_bytes(png)
        (output / "episodes.json").write_text(json.dumps(summary, indent=1))
        (output / "index.html").write_text(page, encoding="utf-8")
    except OSError as e:
        raise NipConfigError(f"output={output}: cannot write there ({e.strerror or e})") from e
    summary["output"] = str(output)
    return summary


def html_page(summary: dict, pictures: list[tuple[str, bytes]]) -> str:
    """One page, pictures embedded as data URIs: it opens offline, wherever it is copied."""
    esc = html.escape
    how = "greedy actions" if summary["greedy"] else f"sampled actions, seed {summary['seed']}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>nip episodes: {esc(summary['checkpoint'])}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em;max-width:1200px}"
        "figure{margin:1.5em 0;border-top:1px solid #ccc;padding-top:1em}"
        "img{max-width:100%}pre{font-size:0.85em;white-space:pre-wrap}</style>",
        "</head><body>",
        f"<h1>Episodes of {esc(summary['protocol'])} after {summary['iteration']} iterations</h1>",
        f"<p>checkpoint {esc(summary['checkpoint'])}; data {esc(summary['dataset'])}; {how}; "
        f"{len(summary['episodes'])} episodes shown of {summary['num_played']} played"
        + (f" (only {esc(summary['only'])})" if summary["only"] else "")
        + ".</p>",
    ]
    for row, (name, png) in zip(summary["episodes"], pictures, strict=True):
        parts.append(episode_html(row, name, png))
    parts.append("</body></html>")
    return "\n".join(parts)


def png_img(png: bytes, alt: str) -> str:
    """An ``<img>`` element holding ``png`` itself (a data URI: nothing to fetch)."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def episode_html(row: dict, name: str, png: bytes) -> str:
    """One episode's ``<figure>``: its picture and, below, the outcome and the transcript."""
    esc = html.escape
    verdict = "right" if row["right"] else "wrong"
    return "\n".join(
        [
            f'<figure id="{esc(name)}">',
            png_img(png, f"episode on datapoint {row['datapoint_id']}"),
            f"<figcaption>datapoint {row['datapoint_id']}: label {esc(row['label'])}, "
            f"verifier {esc(row['decision'])} ({verdict}), {row['length']} rounds"
            f"<pre>{esc(chr(10).join(row['transcript']))}</pre></figcaption>",
            "</figure>",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    """Parse ``key=value`` arguments against :class:`VisualiseArgs` and draw."""
    argv = sys.argv[1:] if argv is None else argv

    def task():
        args = parse_args(VisualiseArgs, argv, __doc__)
        if args is None:
            return
        summary = visualise(args)
        shown = len(summary["episodes"])
        played = summary["num_played"]
        which = f" (only={summary['only']}: {shown} of {played} played)" if summary["only"] else ""
        print(f"{shown} episode pictures and index.html written to {summary['output']}{which}")

    guarded(task)


if __name__ == "__main__":
    main()
