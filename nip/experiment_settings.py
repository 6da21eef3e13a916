"""Runtime settings of one run: where it writes and what it runs on (not the science)."""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class ExperimentSettings:
    """Everything a run needs besides its hyper-parameters.

    Attributes
    ----------
    run_dir : Path
        The run's output directory (Hydra's run directory from the CLI).
    device : torch.device
        Where models and environments live.
    cache_dir : Path
        Where generated datasets are cached.
    progress_bar : bool
        Show tqdm progress bars.
    wandb_run : Any
        An active ``wandb`` run, or ``None`` for local logging only.
    base_run_checkpoint : str or None
        A checkpoint (file, directory, or W&B artifact name) to start from instead of
        initialising agents, for ``load_and_set_state_from_checkpoint(from_base_run=True)``.
    logger : logging.Logger
        Where progress messages go (Hydra also writes them to the run's log file).
    """

    run_dir: Path
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    cache_dir: Path = field(default_factory=lambda: Path("~/.cache/nip").expanduser())
    progress_bar: bool = True
    wandb_run: Any = None
    base_run_checkpoint: str | None = None
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("nip"))

    @property
    def run_id(self) -> str:
        """The run's identifier: its directory."""
        return str(self.run_dir)


def resolve_device(kind: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    from nip.errors import NipConfigError

    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise NipConfigError("device=cuda was requested but no CUDA GPU is available")
    return torch.device(kind)
