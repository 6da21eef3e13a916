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
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import MISSING

from nip.checkpointing import atomic_write_json, load_checkpoint_file, resolve_checkpoint_path
from nip.cli import guarded, parse_args
from nip.config.root import hyper_params_from_dict
from nip.evaluation import EpisodeResults, episode_stats, run_episodes
from nip.experiment_settings import resolve_device
from nip.factory import MAX_EVAL_ENVS, build_evaluation_env, build_evaluation_setup
from nip.operators import build_policy_operator
from nip.stats import chance_accuracy, share_key
from nip.trainers.solo_agent import EVAL_BATCH_SIZE
from nip.trainers.supervised import SoloClassifiers, classification_stats
from nip.utils.seeding import derive_seed, fork_rng


@dataclass
class DatasetArgs:
    """The dataset to evaluate on: a file, or a split of the run's own data (exactly one).

    Attributes
    ----------
    path : str or None
        A dataset file of the run's scenario (GI: a pairs file in either format).
    split : str or None
        ``train`` or ``test``: that split of the data the run was trained and tested on,
        rebuilt from its configuration (through the dataset cache).
    """

    path: str | None = None
    split: str | None = None


@dataclass
class EvaluateArgs:
    """Arguments of ``nip.evaluate``.

    Attributes
    ----------
    checkpoint : str
        A run directory, its ``checkpoints`` directory, or a checkpoint file.
    dataset : DatasetArgs
        ``dataset.path`` (a file) or ``dataset.split`` (``train`` / ``test`` of the run's
        own data).
    num_passes : int
        Episodes per pair; each pass samples the agents' actions afresh.
    seed : int
        Seeds the agents' sampled actions (and the episode seeds): the same seed gives the
        same figures.
    greedy : bool
        Play every agent's most likely action instead of sampling actions from the policy,
        as training does (the default).
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    output : str or None
        Where to write the JSON (default: beside the checkpoint).
    """

    checkpoint: str = MISSING
    dataset: DatasetArgs = field(default_factory=DatasetArgs)
    num_passes: int = 1
    seed: int = 0
    greedy: bool = False
    device: str = "auto"
    output: str | None = None


def evaluate(args: EvaluateArgs) -> dict[str, float]:
    """Evaluate a checkpoint on a dataset; returns (and writes) the statistics.

    Raises
    ------
    NipConfigError
        Unless exactly one of ``dataset.path`` and ``dataset.split`` (train or test) is given.
    """
    from nip.errors import NipConfigError

    path, split = args.dataset.path, args.dataset.split
    if (path is None) == (split is None):
        raise NipConfigError("give exactly one of dataset.path=<file> and dataset.split=train|test")
    if split is not None and split not in ("train", "test"):
        raise NipConfigError(f"dataset.split must be train or test, got {split!r}")
    checkpoint_path = resolve_checkpoint_path(args.checkpoint)
    name = f"split_{split}" if split is not None else Path(path).stem
    output = (
        Path(args.output).expanduser()
        if args.output
        else checkpoint_path.parent / f"evaluation_{name}.json"
    )
    check_writable(output)
    state = load_checkpoint_file(checkpoint_path)
    hp = hyper_params_from_dict(state["hyper_params"])
    device = resolve_device(args.device)
    setup = build_evaluation_setup(hp, state["policy"], device, split=split, path=path)
    scenario, dataset, policy = setup.scenario, setup.dataset, setup.policy
    protocol_handler = setup.protocol_handler
    num_envs = min(len(dataset), MAX_EVAL_ENVS)
    if "solo_heads" in state:
        stats = evaluate_solo(state, hp, scenario, policy, dataset, device)
        return _report(args, checkpoint_path, output, state, len(dataset), stats, scenario)
    env = build_evaluation_env(setup, hp, state["observation_norm"], num_envs, args.seed, device)
    with fork_rng(device):
        torch.manual_seed(derive_seed(args.seed, "evaluate"))
        results = [
            run_episodes(
                env,
                build_policy_operator(policy, scenario.policy_in_keys),
                len(dataset),
                greedy=args.greedy,
            )
            for _ in range(args.num_passes)
        ]
    merged = EpisodeResults.concatenate(results)
    strata = scenario.strata(dataset)
    stats = episode_stats(
        merged, protocol_handler.agent_names, strata, prefix="", label_names=scenario.label_names
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


def check_writable(path: Path) -> None:
    """Fail now, not after the evaluation, if ``path`` cannot be written.

    Raises
    ------
    NipConfigError
        Naming the path and the reason.
    """
    from nip.errors import NipConfigError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as e:
        raise NipConfigError(f"output={path}: cannot write there ({e.strerror or e})") from e
    if path.is_dir():
        raise NipConfigError(f"output={path} is a directory; give a file name")


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
