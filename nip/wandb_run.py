"""Starting (or resuming) the W&B run of an experiment, when ``logger=wandb``."""

import os
import re
import uuid
from pathlib import Path
from typing import Any

from nip.checkpointing import atomic_write_text
from nip.config.choices import LoggerMode
from nip.config.root import hyper_params_record
from nip.errors import NipConfigError

RUN_ID_FILE = "wandb_run_id.txt"


def _has_credentials() -> bool:
    """Whether wandb finds credentials, wherever it accepts them, without asking the server.

    ``WANDB_API_KEY``, the netrc file ``wandb login`` writes, an ``api_key`` in wandb's settings
    files, an identity-token file (``WANDB_IDENTITY_TOKEN_FILE``): wandb's own lookup decides,
    with no prompt and no network request.
    """
    import wandb

    return bool(wandb.login(verify=False, prompt=False))


def sweep_group(sweep_dir: Path) -> str:
    """The default W&B group of a sweep's runs: its directory's name.

    Hydra's default sweep directories are ``<date>/<time>``; the date is kept then, so that
    groups of different days stay apart.
    """
    sweep_dir = Path(sweep_dir)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", sweep_dir.parent.name):
        return f"{sweep_dir.parent.name}_{sweep_dir.name}"
    return sweep_dir.name


def start_wandb_run(
    hyper_params,
    run_dir: Path,
    *,
    sweep_dir: Path | None = None,
    job_overrides: list[str] | tuple[str, ...] = (),
) -> Any:
    """The W&B run for ``run_dir``: a new one, or the same run id when the run resumes.

    The run id is kept in ``run_dir/wandb_run_id.txt``, so re-running in the same directory
    (or a requeued SLURM job) continues the same W&B run; without that file, ``WANDB_RUN_ID``
    names the run to continue. Returns ``None`` without
    ``logger=wandb``.

    A job of a sweep (``sweep_dir`` given) is named by its overrides (``seed=1,trainer.lr=0.001``)
    and grouped by the sweep (:func:`sweep_group`) unless ``logger.group`` says otherwise.

    Raises
    ------
    NipConfigError
        For ``logger.mode=online`` without W&B credentials.
    """
    cfg = hyper_params.logger
    if cfg.name != "wandb":
        return None
    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    if cfg.mode == LoggerMode.online and not _has_credentials():
        raise NipConfigError(
            "logger.mode=online needs a W&B login: run `wandb login`, set WANDB_API_KEY, "
            "or use logger.mode=offline"
        )
    id_file = Path(run_dir) / RUN_ID_FILE
    if id_file.is_file():
        run_id = id_file.read_text().strip()
    else:
        # WANDB_RUN_ID names the run to continue when the run directory is gone (a new node).
        run_id = os.environ.get("WANDB_RUN_ID") or uuid.uuid4().hex[:12]
        atomic_write_text(id_file, run_id + "\n")
    return wandb.init(
        project=cfg.project,
        entity=cfg.entity,
        id=run_id,
        name=",".join(job_overrides) or Path(run_dir).name,
        resume="allow",
        mode=str(cfg.mode),
        group=cfg.group or (sweep_group(sweep_dir) if sweep_dir is not None else None),
        tags=list(cfg.tags),
        notes=cfg.notes,
        dir=str(run_dir),
        config=hyper_params_record(hyper_params),
    )
