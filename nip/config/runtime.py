"""Schemas of the runtime groups (``device``, ``logger``) and of ``checkpoint``.

None of these change the science of a run: they may differ between a run and its resumption.
"""

from dataclasses import dataclass, field

from nip.config.choices import DeviceType, LoggerMode


@dataclass
class DeviceConfig:
    """Where tensors live (``device=auto|cpu|cuda``).

    Attributes
    ----------
    type : DeviceType
        ``auto`` picks CUDA when a GPU is present, else the CPU.
    num_threads : int or None
        Intra-op CPU threads for torch; ``None`` keeps torch's default.
    """

    type: DeviceType = DeviceType.auto
    num_threads: int | None = None


@dataclass
class LoggerConfig:
    """Local logging (``logger=local``): metrics.jsonl, a log file, a progress bar, a plot.

    Attributes
    ----------
    progress_bar : bool
        Show progress bars (tqdm) for training and tests.
    """

    name: str = "local"
    progress_bar: bool = True


@dataclass
class CheckpointConfig:
    """Checkpointing.

    Attributes
    ----------
    interval : int
        Training iterations between checkpoints (one is always written at the end).
    """

    interval: int = 50


@dataclass
class WandbLoggerConfig(LoggerConfig):
    """Weights & Biases logging (``logger=wandb``) on top of the local files.

    Attributes
    ----------
    project, entity : str or None
        Where the run goes (``entity`` null: your default entity).
    mode : LoggerMode
        ``online``, ``offline`` (sync later with ``wandb sync``) or ``disabled``.
    group, tags, notes
        Passed to ``wandb.init`` to organise runs.
    log_checkpoints : bool
        Log every checkpoint as a new version of the artifact ``checkpoint_<run id>``.
    rollout_sample_period, num_rollout_samples : int
        Every that many iterations (and at the first), log that many complete episodes
        (graphs, transcript, decision, returns) as the table ``rollout_samples``.
    """

    name: str = "wandb"
    project: str = "nip"
    entity: str | None = None
    mode: LoggerMode = LoggerMode.online
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    notes: str | None = None
    log_checkpoints: bool = True
    rollout_sample_period: int = 100
    num_rollout_samples: int = 10


@dataclass
class BaseRunConfig:
    """Start a new run from another run's trained agents (``base_run.*``).

    Attributes
    ----------
    run_id : str or None
        A local run directory or checkpoint file, or a W&B run path ``entity/project/run_id``
        whose checkpoint artifact ``checkpoint_<run_id>`` is downloaded.
    version : str
        Which version of that artifact (``latest``, ``v3``, ...).
    """

    run_id: str | None = None
    version: str = "latest"
