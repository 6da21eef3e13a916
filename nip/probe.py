"""Entry point: ``python -m nip.probe checkpoint=<run dir>``: what do the messages encode?

Plays ``num_passes`` sampled episodes per example of the run's test split (or
``dataset.split=train``, or ``dataset.path=...``) and fits, on a seeded split of the examples
into train and held-out (every episode of an example on the same side, so that an example
seen in training cannot be recognised), a logistic regression (scikit-learn) from the
messages to each property of the example the scenario names (GI: ``label``, ``matched``,
``prover_node_high_degree``; images: ``label``, ``class``). Features: the one-hot items
each agent pointed at per round, channel and position, for all agents together and for each
agent alone. Reported per property and agent set: held-out accuracy, the same with the
messages shuffled among the episodes (the link between messages and examples broken: what
fitting alone gives; mean of 10 shuffles), and chance (always the training majority class). Prints a table and writes
JSON (default ``<run dir>/probe_<data>.json``).
"""

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nip.checkpointing import atomic_write_json, resolve_checkpoint_path
from nip.cli import guarded, parse_args
from nip.episodes import SILENT, one_hot_items
from nip.errors import NipConfigError
from nip.evaluation import record_episodes
from nip.factory import MAX_EVAL_ENVS
from nip.playback import (
    PlayArgs,
    check_writable,
    data_name,
    dataset_choice,
    load_trained_run,
    run_directory,
)
from nip.utils.seeding import derive_seed, fork_rng

# Fewest examples on each side of the split for a probe to be fitted and scored.
MIN_EXAMPLES = 4
# The shuffled baseline is the mean over this many shuffles.
NUM_SHUFFLES = 10


@dataclass
class ProbeArgs(PlayArgs):
    """Arguments of ``nip.probe``: those of :class:`nip.playback.PlayArgs` (``dataset``
    defaults to the test split; ``seed`` also seeds the split; ``output``: the JSON, default
    ``<run dir>/probe_<data>.json``) and

    Attributes
    ----------
    num_passes : int
        Episodes per example (each pass samples the agents' actions afresh).
    heldout_fraction : float
        Share of the examples held out to score the probes.
    """

    num_passes: int = 4
    heldout_fraction: float = 0.3


def message_features(pointed: Tensor, num_items: int, agents: list[int]) -> np.ndarray:
    """float ``[E, F]``: the one-hot items the ``agents`` pointed at, per round, channel and
    position, side by side (zeros where an agent was silent).

    Parameters
    ----------
    pointed : Tensor
        long ``[E, T, A, C, P]`` (see :func:`nip.evaluation.record_episodes`).
    """
    return one_hot_items(pointed[:, :, agents], num_items).flatten(1).numpy()


def split_examples(groups: np.ndarray, heldout_fraction: float, seed: int) -> np.ndarray:
    """bool ``[E]``: episodes held out, chosen by example (``groups``), seeded."""
    examples = np.unique(groups)
    rng = np.random.default_rng(seed)
    held = rng.permutation(examples)[: max(1, round(heldout_fraction * len(examples)))]
    return np.isin(groups, held)


def fit_probe(
    features: np.ndarray, target: np.ndarray, heldout: np.ndarray, seed: int
) -> dict[str, float | int | str]:
    """Held-out accuracy of a logistic regression from ``features`` to ``target``, of the
    same fitted and scored with the features shuffled among the episodes of each side (mean
    over :data:`NUM_SHUFFLES` shuffles), and of always the training majority class.

    Returns
    -------
    dict
        ``accuracy``, ``shuffled_accuracy``, ``chance``, ``num_train``, ``num_heldout``,
        ``num_classes``; NaN accuracies and a ``skipped`` reason where a side has fewer than
        :data:`MIN_EXAMPLES` episodes or the training side has one class only.
    """
    from sklearn.linear_model import LogisticRegression

    train = ~heldout
    x_train, y_train, x_held, y_held = (
        features[train],
        target[train],
        features[heldout],
        target[heldout],
    )
    report: dict = {
        "num_train": int(train.sum()),
        "num_heldout": int(heldout.sum()),
        "num_classes": int(len(np.unique(target))),
    }
    classes, counts = np.unique(y_train, return_counts=True)
    if min(len(y_train), len(y_held)) < MIN_EXAMPLES or len(classes) < 2:
        why = "too few episodes" if min(len(y_train), len(y_held)) < MIN_EXAMPLES else "one class"
        return {
            **report,
            "accuracy": math.nan,
            "shuffled_accuracy": math.nan,
            "chance": math.nan,
            "skipped": why,
        }
    majority = classes[counts.argmax()]

    def score(x_fit: np.ndarray, x_score: np.ndarray) -> float:
        model = LogisticRegression(max_iter=2000)
        model.fit(x_fit, y_train)
        return float((model.predict(x_score) == y_held).mean())

    # Messages shuffled among the episodes of each side: they keep their distribution but
    # say nothing of their own example. (Shuffling the training side alone is no baseline:
    # a message that determines the target is then learnt right or inverted by luck.)
    rng = np.random.default_rng(seed)
    shuffled = [
        score(x_train[rng.permutation(len(x_train))], x_held[rng.permutation(len(x_held))])
        for _ in range(NUM_SHUFFLES)
    ]
    return {
        **report,
        "accuracy": score(x_train, x_held),
        "shuffled_accuracy": float(np.mean(shuffled)),
        "chance": float((y_held == majority).mean()),
    }


def probe_messages(
    targets: dict[str, tuple[Tensor, Tensor]],
    pointed: Tensor,
    num_items: int,
    groups: np.ndarray,
    agent_names: tuple[str, ...],
    *,
    heldout_fraction: float,
    seed: int,
) -> list[dict]:
    """One row per target and agent set (``all`` and each agent that ever spoke): see
    :func:`fit_probe`."""
    heldout = split_examples(groups, heldout_fraction, seed)
    speakers = [a for a in range(len(agent_names)) if (pointed[:, :, a] != SILENT).any()]
    sets = [("all", speakers)] + [(agent_names[a], [a]) for a in speakers]
    rows = []
    for name, (target, defined) in targets.items():
        keep = defined.numpy()
        for label, agents in sets:
            features = message_features(pointed, num_items, agents)[keep]
            fitted = fit_probe(features, target.numpy()[keep], heldout[keep], seed)
            rows.append({"target": name, "messages_of": label, **fitted})
    return rows


def probe(args: ProbeArgs) -> dict:
    """Play, fit and write the report; returns it with its path.

    Raises
    ------
    NipConfigError
        For arguments that cannot work, a solo-agent checkpoint or an unwritable output.
    NipCheckpointError, NipDataError
        For a missing or damaged checkpoint, or a dataset file not of the run's scenario.
    """
    if args.num_passes < 1:
        raise NipConfigError(f"num_passes must be at least 1, got {args.num_passes}")
    if not 0 < args.heldout_fraction < 1:
        raise NipConfigError(f"heldout_fraction must be in (0, 1), got {args.heldout_fraction}")
    path, split = dataset_choice(args.dataset, default_split="test")
    checkpoint_path = resolve_checkpoint_path(args.checkpoint)
    output = (
        Path(args.output).expanduser()
        if args.output
        else run_directory(checkpoint_path) / f"probe_{data_name(path, split)}.json"
    )
    check_writable(output)
    run = load_trained_run(checkpoint_path, args.device, path, split)
    run.refuse_solo("its agents send no messages")
    setup = run.setup
    env = run.environment(min(len(setup.dataset), MAX_EVAL_ENVS), args.seed)
    num_episodes = args.num_passes * len(setup.dataset)
    with fork_rng(run.device):
        torch.manual_seed(derive_seed(args.seed, "probe"))
        results, pointed = record_episodes(
            env, run.policy_operator(), num_episodes, greedy=args.greedy
        )
    examples = env.base_env.examples(results.datapoint_id)
    handler = setup.protocol_handler
    targets = setup.scenario.probe_targets(setup.dataset, results, pointed, examples, handler)
    rows = probe_messages(
        targets,
        pointed,
        env.base_env.num_items,
        results.datapoint_id.numpy(),
        handler.agent_names,
        heldout_fraction=args.heldout_fraction,
        seed=args.seed,
    )
    report = {
        "checkpoint": str(checkpoint_path),
        "iteration": run.state["iteration"],
        "dataset": str(path) if path else f"split={split}",
        "num_examples": len(setup.dataset),
        "num_episodes": num_episodes,
        "num_passes": args.num_passes,
        "heldout_fraction": args.heldout_fraction,
        "seed": args.seed,
        "greedy": args.greedy,
        "probes": rows,
    }
    atomic_write_json(output, report)
    report["output"] = str(output)
    return report


def format_table(rows: list[dict]) -> str:
    """The probes as an aligned text table."""
    header = ("target", "messages of", "held-out acc", "shuffled", "chance", "train/held-out")
    lines = [header]
    for r in rows:
        numbers = [
            f"{r[k]:.3f}" if not math.isnan(r[k]) else "-"
            for k in ("accuracy", "shuffled_accuracy", "chance")
        ]
        lines.append(
            (
                r["target"],
                r["messages_of"],
                *numbers,
                f"{r['num_train']}/{r['num_heldout']}"
                + (f" ({r['skipped']})" if "skipped" in r else ""),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def main(argv: list[str] | None = None) -> None:
    """Parse ``key=value`` arguments against :class:`ProbeArgs` and probe."""
    argv = sys.argv[1:] if argv is None else argv

    def task():
        args = parse_args(ProbeArgs, argv, __doc__)
        if args is None:
            return
        report = probe(args)
        print(
            f"message probes on {report['num_episodes']} episodes of {report['num_examples']} "
            f"examples ({report['dataset']}), held-out share {report['heldout_fraction']}:"
        )
        print(format_table(report["probes"]))
        print(f"written to {report['output']}")

    guarded(task)


if __name__ == "__main__":
    main()
