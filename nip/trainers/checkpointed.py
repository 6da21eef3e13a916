"""Trainers that own a run directory: metrics, checkpoints, stop signals, resumption, W&B.

Everything here is independent of how a trainer learns: the RL trainers
(:mod:`nip.trainers.rl_tensordict_base`) and the supervised solo-agent trainer
(:mod:`nip.trainers.solo_agent`) both build on it, so every trainer writes, checks and resumes
its run directory in the same way.
"""

import json
import os
import platform
import signal
import time
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import torch

import nip
from nip.checkpointing import (
    CHECKPOINT_FORMAT_VERSION,
    STATE_FILE,
    atomic_torch_save,
    atomic_write_json,
    capture_rng_state,
    load_checkpoint_file,
    remove_stale_temporaries,
    resolve_checkpoint_path,
)
from nip.config.root import (
    agent_is_fixed,
    hyper_params_record,
    science_dict,
    with_added_science_fields,
)
from nip.errors import NipCheckpointError, NipInterrupted, NipRunError
from nip.metrics import MetricsFile
from nip.trainers.trainer_base import Trainer, TrainerState
from nip.utils.signals import StopRequests


class CheckpointNotFoundError(FileNotFoundError):
    """The run has no checkpoint yet (a fresh run)."""


class CheckpointedTrainer(Trainer):
    """Base of the trainers: a run directory that is written, checked and resumed safely.

    A trainer counts its progress in iterations (RL iterations, or epochs of supervised
    training) in ``self.state``. Subclasses build their models in ``__init__`` and then call
    :meth:`_resume_or_initialise`; they implement :attr:`num_iterations`,
    :meth:`_initialise_state`, :meth:`_restore` and :meth:`_trainer_state`, and call
    :meth:`_check_stop` at safe points of their loops after keeping the state of the last
    iteration boundary in ``self._boundary``.

    Parameters
    ----------
    hyper_params : HyperParameters
        The run's typed configuration.
    scenario_instance : ScenarioInstance
        Datasets, protocol, environments and the combined agents.
    settings : ExperimentSettings
        Runtime settings.
    """

    # What one unit of progress is called in messages ("iteration", "epoch").
    ITERATION_NAME: ClassVar[str] = "iteration"

    def __init__(self, hyper_params, scenario_instance, settings):
        super().__init__(hyper_params, scenario_instance, settings)
        #: The registered scenario (:class:`~nip.scenarios.base.Scenario`) of the run.
        self.scenario = scenario_instance.scenario
        #: The protocol's rules (:class:`~nip.protocols.base.ProtocolHandler`).
        self.protocol_handler = scenario_instance.protocol_handler
        #: The protocol's agents, in the order of the agent dimension.
        self.agent_names = tuple(self.protocol_handler.agent_names)
        #: Number of agents ``A``.
        self.num_agents = len(self.agent_names)
        agent_cfgs = [
            self.scenario.agent_config(self.protocol_handler, hyper_params.scenario, name)
            for name in self.agent_names
        ]
        #: Per agent: it learns (neither ``frozen`` nor ``random``); the others' losses do not
        #: count.
        self.learning_agents = tuple(not agent_is_fixed(cfg) for cfg in agent_cfgs)
        #: Per agent: it samples uniformly among its open actions (``random``).
        self.random_agents = tuple(cfg.random for cfg in agent_cfgs)
        #: The torch device of the run.
        self.device = settings.device
        #: The run's ``metrics.jsonl``.
        self.metrics = MetricsFile(settings.run_dir / "metrics.jsonl")
        # What every checkpoint records of the configuration (fixed for the run).
        self._science_json = json.dumps(science_dict(hyper_params), sort_keys=True)
        self._hyper_params_json = hyper_params_record(hyper_params)
        self._checkpoint: dict[str, Any] | None = None
        # Set when the checkpoint came from W&B: the history before it is in the W&B run.
        self._history_in_wandb = False
        # Iteration of the checkpoint on disk (None before the first one).
        self._saved_iteration: int | None = None
        self._stops = StopRequests()  # active while train() runs
        # The state at the current iteration's start, written if a stop signal arrives.
        self._boundary: dict[str, Any] | None = None

    @property
    @abstractmethod
    def num_iterations(self) -> int:
        """The iterations (or epochs) the run trains for."""

    @abstractmethod
    def _initialise_state(self) -> None:
        """Set up a fresh run (no checkpoint of its own yet)."""

    @abstractmethod
    def _restore(self, state: dict[str, Any]) -> None:
        """Load the models and training state from this run's checkpoint ``state``."""

    @abstractmethod
    def _trainer_state(self) -> dict[str, Any]:
        """The trainer's own part of a checkpoint: models, optimizer, RNG-bearing state."""

    def _resume_or_initialise(self) -> None:
        """Resume from the run's checkpoint, or start afresh when it has none."""
        try:
            state = self._load_state_dict_from_active_run_checkpoint()
        except CheckpointNotFoundError:
            self._initialise_state()
            return
        self._check_same_science(state)
        if state["iteration"] > self.num_iterations:
            raise NipCheckpointError(
                f"the checkpoint in {self.checkpoint_base_dir} has completed "
                f"{state['iteration']} iterations, more than the {self.num_iterations} "
                f"this run is configured for"
            )
        self._restore(state)
        self.state = TrainerState(
            iteration=state["iteration"],
            tested=state["tested"] and state["iteration"] == self.num_iterations,
        )
        self._checkpoint = state
        self._saved_iteration = state["iteration"]
        self.settings.logger.info(
            f"resuming from {self.checkpoint_state_path} at iteration {self.state.iteration}"
        )

    # -- paths -----------------------------------------------------------------------------
    @classmethod
    def get_checkpoint_base_dir_from_run_id(cls, run_id: str) -> Path:
        """The checkpoint directory of a run (a run's id is its output directory)."""
        return Path(run_id) / "checkpoints"

    @property
    def checkpoint_base_dir(self) -> Path:
        """This run's checkpoint directory."""
        return self.get_checkpoint_base_dir_from_run_id(self.settings.run_id)

    @property
    def checkpoint_state_path(self) -> Path:
        """The checkpoint itself: models, optimizer, RNG, data order, in-flight episodes."""
        return self.checkpoint_base_dir / STATE_FILE

    @property
    def checkpoint_metadata_path(self) -> Path:
        """Package and platform versions of the checkpoint (informational)."""
        return self.checkpoint_base_dir / "metadata.json"

    @property
    def checkpoint_params_path(self) -> Path:
        """The hyper-parameters of the checkpoint, as JSON (informational)."""
        return self.checkpoint_base_dir / "hyper_params.json"

    def _load_state_dict_from_active_run_checkpoint(self) -> dict[str, Any]:
        """This run's checkpoint: the local file, else the W&B run's latest checkpoint artifact.

        Local files are the source of truth. When they are gone (a requeued job on a new node)
        but the W&B run being resumed has logged checkpoints, the latest version is
        downloaded, copied into the run directory and used.
        """
        if self.checkpoint_state_path.is_file():
            return load_checkpoint_file(self.checkpoint_state_path)
        run = self.settings.wandb_run
        if run is None or not getattr(run, "resumed", False):
            raise CheckpointNotFoundError(self.checkpoint_state_path)
        try:
            artifact = run.use_artifact(f"checkpoint_{run.id}:latest")
            downloaded = Path(artifact.download(root=str(self.checkpoint_base_dir / ".download")))
        except Exception as e:  # no artifact logged yet: a fresh start
            self.settings.logger.info(f"no checkpoint artifact for W&B run {run.id}: {e}")
            raise CheckpointNotFoundError(self.checkpoint_state_path) from e
        source = resolve_checkpoint_path(downloaded)
        state = load_checkpoint_file(source)
        atomic_torch_save(state, self.checkpoint_state_path)
        self.settings.logger.info(f"checkpoint restored from W&B artifact checkpoint_{run.id}")
        # The history up to here lives in the W&B run; local metrics start afresh.
        self._history_in_wandb = True
        return state

    def _load_state_dict_from_base_run_checkpoint(self, version: str = "latest") -> dict[str, Any]:
        """The checkpoint named by ``settings.base_run_checkpoint``.

        A local path (run directory, checkpoint directory or state file) is read directly;
        anything else is taken as a W&B run path ``entity/project/run_id`` whose checkpoint
        artifact ``checkpoint_<run_id>:<version>`` is downloaded with wandb's public API.
        """
        reference = self.settings.base_run_checkpoint
        if reference is None:
            raise NipCheckpointError("no base run checkpoint was given")
        local = Path(reference).expanduser()
        if not local.exists():
            import wandb

            run_id = reference.rstrip("/").split("/")[-1]
            prefix = reference.rstrip("/").rsplit("/", 1)[0] + "/" if "/" in reference else ""
            try:
                artifact = wandb.Api().artifact(f"{prefix}checkpoint_{run_id}:{version}")
                local = Path(artifact.download())
            except Exception as e:  # wandb raises many error types for missing runs
                first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise NipCheckpointError(
                    f"cannot fetch the checkpoint of base run {reference}:{version}: {first_line}"
                ) from e
        return load_checkpoint_file(resolve_checkpoint_path(local))

    def _check_same_science(self, state: dict[str, Any]) -> None:
        stored = with_added_science_fields(json.loads(state["science"]))
        current = json.loads(json.dumps(science_dict(self.hyper_params), sort_keys=True))
        if stored != current:
            diffs = sorted(_differences(stored, current))
            raise NipCheckpointError(
                f"the run directory {self.settings.run_dir} holds a checkpoint of a different "
                f"experiment (changed: {', '.join(diffs[:6])}); use a new run directory"
            )

    def _get_metadata(self) -> dict[str, Any]:
        """Versions and platform, saved beside every checkpoint."""
        import tensordict
        import torchrl

        return {
            "package_name": "nip",
            "package_version": nip.__version__,
            "torch_version": torch.__version__,
            "torchrl_version": torchrl.__version__,
            "tensordict_version": tensordict.__version__,
            "python_version": platform.python_version(),
            "platform": platform.platform(),
            "device": str(self.device),
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def save_checkpoint(self, log: bool = True) -> None:
        """Write the complete training state atomically.

        The state file holds the iteration, the configuration, every RNG state and the
        trainer's own state (:meth:`_trainer_state`: models, optimizer, data order, in-flight
        episodes), so that a resumed run continues exactly as if it had not stopped.

        Parameters
        ----------
        log : bool
            Also log the checkpoint as a W&B artifact when a W&B run is active.
        """
        self._write_checkpoint(self._checkpoint_state(), log=log)

    def _checkpoint_state(self) -> dict[str, Any]:
        """Everything :meth:`save_checkpoint` writes, as it is now (tensors not copied)."""
        return {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "iteration": self.state.iteration,
            "tested": self.state.tested,
            "science": self._science_json,
            "hyper_params": self._hyper_params_json,
            "agent_names": list(self.agent_names),
            **self._trainer_state(),
            "rng": capture_rng_state(),
            "metrics_lines": self.metrics.num_lines(),
        }

    def _write_checkpoint(self, state: dict[str, Any], log: bool = True) -> None:
        """Write ``state`` (from :meth:`_checkpoint_state`) atomically; log it to W&B."""
        atomic_write_json(self.checkpoint_metadata_path, self._get_metadata())
        atomic_write_json(self.checkpoint_params_path, state["hyper_params"])
        atomic_torch_save(state, self.checkpoint_state_path)
        self._saved_iteration = state["iteration"]
        run = self.settings.wandb_run
        if log and run is not None and getattr(self.hyper_params.logger, "log_checkpoints", True):
            self._add_file_to_wandb_artifact(
                f"checkpoint_{run.id}", "checkpoint", self.checkpoint_state_path
            )

    def _add_file_to_wandb_artifact(
        self, artifact_name: str, artifact_type: str, file_path: Path
    ) -> None:
        """Log a file as a new version of a W&B artifact (no-op without a W&B run)."""
        run = self.settings.wandb_run
        if run is None:
            return
        import wandb

        artifact = wandb.Artifact(name=artifact_name, type=artifact_type)
        artifact.add_file(str(file_path))
        run.log_artifact(artifact)

    def _prepare_run_directory(self) -> None:
        """Before (re)starting: clear torn writes, check and trim the metrics history.

        Lines after the checkpoint come from work that will be redone (test lines too).
        """
        # What interrupted writes left behind (we hold the run directory's lock).
        remove_stale_temporaries(self.settings.run_dir, self.checkpoint_base_dir)
        self._check_metrics_history()
        self.metrics.truncate(self._checkpoint["metrics_lines"] if self._checkpoint else 0)

    def _log_row(self, row: dict[str, Any]) -> None:
        """Append a line to the metrics file and, with a W&B run, log it at its iteration."""
        self.metrics.append(row)
        if self.settings.wandb_run is not None:
            self.settings.wandb_run.log(row, step=row["iteration"])

    def _check_metrics_history(self) -> None:
        """Refuse to resume over a metrics file that lost lines the checkpoint counts.

        Resuming would write the later iterations only, a history with a hole.

        Raises
        ------
        NipRunError
            Naming the file and what is missing.
        """
        if self._checkpoint is None or self._history_in_wandb:
            return
        expected = self._checkpoint["metrics_lines"]
        found = self.metrics.num_lines()
        if found < expected:
            raise NipRunError(
                f"{self.metrics.path} has {found} complete lines but the checkpoint of iteration "
                f"{self._checkpoint['iteration']} was written after {expected}: the history is "
                f"incomplete; restore the file, or start a new run directory with "
                f"base_run.run_id={self.settings.run_dir} to continue from these agents"
            )

    def _check_stop(self) -> None:
        """If a stop signal has arrived, write the last iteration boundary and end the run.

        Raises
        ------
        NipInterrupted
            With exit status 128 + the signal number.
        """
        if not self._stops.requested:
            return
        signum, boundary, iteration = self._stops.signum, self._boundary, self.state.iteration
        self._write_checkpoint(boundary, log=False)
        name, unit = signal.Signals(signum).name, self.ITERATION_NAME
        raise NipInterrupted(
            f"stopped by {name} during {unit} {iteration}; a checkpoint after "
            f"{boundary['iteration']} completed {unit}s is written to "
            f"{self.checkpoint_state_path}",
            signum,
            frozenset(self._stops.received),
        )

    def _divergence_error(
        self, iteration: int, detail: str, advice: str | None = None
    ) -> NipRunError:
        """The one-line error for a run whose numbers stopped being finite (or meaningful);
        ``advice``: what to change (default: lower the learning rate)."""
        unit = self.ITERATION_NAME
        if self._saved_iteration is None:
            saved = "no checkpoint had been written yet"
        else:
            saved = f"the checkpoint of {unit} {self._saved_iteration} is intact"
        return NipRunError(
            f"training diverged at {unit} {iteration} ({detail}); {saved}; "
            + (advice or f"try a lower trainer.lr (now {self.hyper_params.trainer.lr:g})")
        )


def resident_memory_mb() -> float:
    """The process's current resident memory in MiB (its peak where /proc is unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys where two nested dicts differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]
