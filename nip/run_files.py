"""The run directory's ``.hydra/`` and ``run.log``, written only once a run is accepted.

Hydra would write both before the run starts, so a run refused for a mistake (a changed
experiment in an existing run directory, a bad dataset, ...) would still overwrite the
composed config and append to the log of the run it was refused for. Instead Hydra's own
writing is off (``hydra.output_subdir: null``, console-only job logging) and
:class:`DeferredRunFiles` keeps the log records in memory until :meth:`accept`.
"""

import logging
from pathlib import Path
from types import TracebackType

from omegaconf import DictConfig, OmegaConf

from nip.checkpointing import atomic_write_text

LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"


class _BufferHandler(logging.Handler):
    """Keeps every record until they are handed to the log file."""

    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:  # noqa: D102
        self.records.append(record)


class DeferredRunFiles:
    """Collect the log while a run is checked; write the run's files when it is accepted.

    Parameters
    ----------
    run_dir : Path
        The run directory.
    task_config : DictConfig
        The composed config (``.hydra/config.yaml``).
    hydra_config : DictConfig
        Hydra's own node (``.hydra/hydra.yaml``).
    overrides : list of str
        The command line's overrides (``.hydra/overrides.yaml``).
    """

    def __init__(
        self,
        run_dir: Path,
        task_config: DictConfig,
        hydra_config: DictConfig,
        overrides: list[str],
    ):
        self.run_dir = Path(run_dir)
        self.task_config = task_config
        self.hydra_config = hydra_config
        self.overrides = list(overrides)
        self._buffer = _BufferHandler()
        self._file: logging.Handler | None = None

    def __enter__(self) -> "DeferredRunFiles":
        logging.getLogger().addHandler(self._buffer)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        root = logging.getLogger()
        root.removeHandler(self._buffer)
        if self._file is not None:
            root.removeHandler(self._file)
            self._file.close()

    def accept(self) -> None:
        """The run goes ahead: write ``.hydra/`` and start ``run.log`` with what was logged."""
        hydra_dir = self.run_dir / ".hydra"
        atomic_write_text(hydra_dir / "config.yaml", OmegaConf.to_yaml(self.task_config))
        atomic_write_text(
            hydra_dir / "hydra.yaml",
            OmegaConf.to_yaml(OmegaConf.create({"hydra": self.hydra_config})),
        )
        atomic_write_text(hydra_dir / "overrides.yaml", OmegaConf.to_yaml(self.overrides))
        self._file = logging.FileHandler(self.run_dir / "run.log", encoding="utf-8")
        self._file.setFormatter(logging.Formatter(LOG_FORMAT))
        root = logging.getLogger()
        for record in self._buffer.records:
            if record.levelno >= root.getEffectiveLevel():
                self._file.handle(record)
        root.removeHandler(self._buffer)
        self._buffer.records.clear()
        root.addHandler(self._file)
