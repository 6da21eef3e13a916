"""Entry point: ``python -m nip.evaluate checkpoint=<run dir|file> dataset.path=<file>``.

Plays one episode per example (per pass) of a dataset file of the run's scenario (GI: a
pairs file in our format or the original code's) with a trained system, prints the
verifier's accuracy overall, on each label and by the scenario's strata (GI: Weisfeiler-Lehman
score; image classification: class), and writes it as JSON beside the checkpoint. A
checkpoint of ``trainer=solo_agent`` has no interaction to play: each agent's solo
classifier classifies every example once, with the same breakdowns per agent.
"""

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from nip.checkpointing import atomic_write_json, resolve_checkpoint_path
from nip.cli import guarded, parse_args
from nip.evaluation import EpisodeResults, episode_stats, run_episodes
from nip.factory import MAX_EVAL_ENVS

# DatasetArgs is re-exported: EvaluateArgs(dataset=DatasetArgs(...)) is the Python API.
from nip.playback import (  # noqa: F401
    DatasetArgs,
    PlayArgs,
    check_writable,
    data_name,
    dataset_choice,
    load_trained_run,
)
from nip.stats import chance_accuracy, share_key
from nip.trainers.solo_agent import EVAL_BATCH_SIZE
from nip.trainers.supervised import SoloClassifiers, classification_stats
from nip.utils.seeding import derive_seed, fork_rng


@dataclass
class EvaluateArgs(PlayArgs):
    """Arguments of ``nip.evaluate``: those of :class:`nip.playback.PlayArgs` (``dataset``
    has no default here; ``output``: the JSON, default beside the checkpoint) and

    Attributes
    ----------
    num_passes : int
        Episodes per pair; each pass samples the agents' actions afresh.
    """

    num_passes: int = 1


def evaluate(args: EvaluateArgs) -> dict[str, float]:
    """Evaluate a checkpoint on a dataset; returns (and writes) the statistics.

    Raises
    ------
    NipConfigError
        Unless exactly one of ``dataset.path`` and ``dataset.split`` (train or test) is given.
    """
    path, split = dataset_choice(args.dataset, default_split=None)
    checkpoint_path = resolve_checkpoint_path(args.checkpoint)
    output = (
        Path(args.output).expanduser()
        if args.output
        else checkpoint_path.parent / f"evaluation_{data_name(path, split)}.json"
    )
    check_writable(output)
    run = load_trained_run(checkpoint_path, args.device, path, split)
    scenario, dataset, policy = run.setup.scenario, run.setup.dataset, run.setup.policy
    state = run.state
    if run.solo:
        stats = evaluate_solo(state, run.hp, scenario, policy, dataset, run.device)
        return _report(args, checkpoint_path, output, state, len(dataset), stats, scenario)
    env = run.environment(min(len(dataset), MAX_EVAL_ENVS), args.seed)
    with fork_rng(run.device):
        torch.manual_seed(derive_seed(args.seed, "evaluate"))
        results = [
            run_episodes(env, run.policy_operator(), len(dataset), greedy=args.greedy)
            for _ in range(args.num_passes)
        ]
    merged = EpisodeResults.concatenate(results)
    stats = episode_stats(
        merged,
        run.setup.protocol_handler.agent_names,
        scenario.strata(dataset),
        prefix="",
        label_names=scenario.label_names,
    )
    return _report(args, checkpoint_path, output, state, len(dataset), stats, scenario)


def evaluate_solo(
    state: dict, hp, scenario, policy: torch.nn.Module, dataset, device: torch.device
) -> dict[str, float]:
    """Each agent's solo classifier (body and solo head) on every pair of ``dataset``.

    Returns
    -------
    dict
        Per trained agent ``<agent>.accuracy`` / ``.loss``, accuracy by label and by the
        scenario's strata; ``num_examples`` and the label-1 share; ``solo: True``.
    """
    view = scenario.supervised_view(policy, dataset, hp.scenario, device=device)
    learning = tuple(
        name in {k.split(".")[0] for k in state["solo_heads"]} for name in policy.agent_names
    )
    classifiers = SoloClassifiers(view, policy.agent_names, learning, seed=hp.seed, lr=None)
    classifiers.heads.load_state_dict(state["solo_heads"])
    stats = classification_stats(
        classifiers, view, torch.arange(len(dataset)), EVAL_BATCH_SIZE, "", view.strata
    )
    return {"solo": True, **stats}


def _report(args, checkpoint_path, output, state, num_pairs, stats, scenario) -> dict:
    """The evaluation's JSON report, written to ``output``; returned with its path."""
    stats["chance_accuracy"] = chance_accuracy(stats[share_key(scenario.label_names)])
    report = {
        "checkpoint": str(checkpoint_path),
        "dataset": str(args.dataset.path) if args.dataset.path else f"split={args.dataset.split}",
        "iteration": state["iteration"],
        "num_pairs": num_pairs,
        "num_passes": args.num_passes,
        "seed": args.seed,
        "greedy": args.greedy,
        **stats,
    }
    atomic_write_json(output, report)
    report["output"] = str(output)
    return report


def _print_solo(report: dict) -> None:
    """Each solo agent's accuracy, overall and by label and stratum."""
    agents = [k[: -len(".accuracy")] for k in report if k.endswith(".accuracy")]
    print(
        f"solo accuracy over {report['num_pairs']} examples (chance "
        f"{report['chance_accuracy']:.4f}: always answering the majority label):"
    )
    for agent in agents:
        print(f"  {agent}: {report[f'{agent}.accuracy']:.4f}")
        for key, value in report.items():
            if key.startswith(f"{agent}.accuracy_"):
                print(f"    {key[len(agent) + len('.accuracy_') :]}: {value:.4f}")
    print(f"written to {report['output']}")
    print(json.dumps({k: v for k, v in report.items() if k != "output"}, indent=None))


def main(argv: list[str] | None = None) -> None:
    """Parse ``key=value`` arguments against :class:`EvaluateArgs` and evaluate."""
    argv = sys.argv[1:] if argv is None else argv

    def task():
        args = parse_args(EvaluateArgs, argv, __doc__)
        if args is None:
            return
        report = evaluate(args)
        if report.get("solo"):
            _print_solo(report)
            return
        how = "greedy actions" if report["greedy"] else f"sampled actions, seed {report['seed']}"
        print(
            f"accuracy: {report['mean_accuracy']:.4f} over {report['num_episodes']:.0f} episodes "
            f"({how}); ran out of rounds {report['terminated_fraction']:.4f}, accepted "
            f"{report['accept_fraction']:.4f}, rejected {report['reject_fraction']:.4f}"
        )
        for key, value in report.items():
            if key.startswith("accuracy_"):
                print(f"  {key[len('accuracy_') :]}: {value:.4f}")
        print(f"written to {report['output']}")
        print(json.dumps({k: v for k, v in report.items() if k != "output"}, indent=None))

    guarded(task)


if __name__ == "__main__":
    main()
