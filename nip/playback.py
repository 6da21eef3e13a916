"""What the commands that play a trained run share (``nip.evaluate``, ``nip.visualise``,
``nip.probe``): their common arguments, the dataset choice, output checks, and the trained
policy loaded with the environment it plays in."""

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import MISSING

from nip.checkpointing import load_checkpoint_file
from nip.config.root import HyperParameters, hyper_params_from_dict
from nip.errors import NipConfigError
from nip.experiment_settings import resolve_device
from nip.factory import EvaluationSetup, build_evaluation_env, build_evaluation_setup
from nip.operators import build_policy_operator


@dataclass
class DatasetArgs:
    """The dataset to play on: a file, or a split of the run's own data (exactly one).

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
class PlayArgs:
    """Arguments every command that plays a trained run takes.

    Attributes
    ----------
    checkpoint : str
        A run directory, its ``checkpoints`` directory, or a checkpoint file.
    dataset : DatasetArgs
        ``dataset.path`` (a file) or ``dataset.split`` (``train`` / ``test`` of the run's
        own data).
    seed : int
        Seeds the agents' sampled actions and the episode seeds: the same seed gives the
        same figures.
    greedy : bool
        Play every agent's most likely action instead of sampling actions from the policy,
        as training does (the default).
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    output : str or None
        Where to write (each command's default is beside the run).
    """

    checkpoint: str = MISSING
    dataset: DatasetArgs = field(default_factory=DatasetArgs)
    seed: int = 0
    greedy: bool = False
    device: str = "auto"
    output: str | None = None


def dataset_choice(
    dataset: DatasetArgs, default_split: str | None
) -> tuple[str | None, str | None]:
    """``(path, split)``: exactly one of them, ``split`` being ``default_split`` when neither
    is given (``None``: one must be given).

    Raises
    ------
    NipConfigError
    """
    path, split = dataset.path, dataset.split
    if path is None and split is None:
        split = default_split
    if (path is None) == (split is None):
        raise NipConfigError("give exactly one of dataset.path=<file> and dataset.split=train|test")
    if split is not None and split not in ("train", "test"):
        raise NipConfigError(f"dataset.split must be train or test, got {split!r}")
    return path, split


def data_name(path: str | None, split: str | None) -> str:
    """``split_<split>`` or the file's stem: how output files name the data."""
    return f"split_{split}" if split is not None else Path(path).stem


def run_directory(checkpoint_path: Path) -> Path:
    """The run directory of a checkpoint file (the parent of its ``checkpoints/``)."""
    parent = checkpoint_path.parent
    return parent.parent if parent.name == "checkpoints" else parent


def check_writable(path: Path) -> None:
    """Fail now, not after playing, if the file ``path`` cannot be written.

    Raises
    ------
    NipConfigError
        Naming the path and the reason.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as e:
        raise NipConfigError(f"output={path}: cannot write there ({e.strerror or e})") from e
    if path.is_dir():
        raise NipConfigError(f"output={path} is a directory; give a file name")


@dataclass
class TrainedRun:
    """A checkpoint's policy, ready to play on the chosen data."""

    checkpoint_path: Path
    state: dict
    hp: HyperParameters
    device: torch.device
    setup: EvaluationSetup

    @property
    def solo(self) -> bool:
        """A ``trainer=solo_agent`` run: its agents classify alone and play no episodes."""
        return "solo_heads" in self.state

    def refuse_solo(self, why: str) -> None:
        """Raise ``NipConfigError`` naming the checkpoint and ``why``, for a solo run."""
        if self.solo:
            raise NipConfigError(f"{self.checkpoint_path} is a trainer=solo_agent run: {why}")

    def environment(self, num_envs: int, seed: int):
        """The data served in order, ``num_envs`` episodes at a time (see
        :func:`nip.factory.build_evaluation_env`)."""
        norm = self.state["observation_norm"]
        return build_evaluation_env(self.setup, self.hp, norm, num_envs, seed, self.device)

    def policy_operator(self):
        """The agents' probabilistic actor over the scenario's observation keys."""
        return build_policy_operator(self.setup.policy, self.setup.scenario.policy_in_keys)


def load_trained_run(
    checkpoint_path: Path, device: str, path: str | None, split: str | None
) -> TrainedRun:
    """Load the checkpoint file and build its policy on the dataset ``path`` or ``split``.

    Raises
    ------
    NipCheckpointError, NipDataError, NipConfigError
        A damaged checkpoint, a dataset not of the run's scenario, networks too large.
    """
    state = load_checkpoint_file(checkpoint_path)
    hp = hyper_params_from_dict(state["hyper_params"])
    resolved = resolve_device(device)
    setup = build_evaluation_setup(hp, state["policy"], resolved, split=split, path=path)
    return TrainedRun(checkpoint_path, state, hp, resolved, setup)
