"""Entry point: ``python -m nip.run [overrides]`` trains one experiment (or a sweep with -m)."""

import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from nip.cli import CONFIG_DIR, guarded, preflight, with_sweeps_searchpath
from nip.config import HyperParameters, register_configs, validate_hyper_params
from nip.errors import NipInterrupted
from nip.experiment_settings import ExperimentSettings, resolve_device
from nip.run_files import DeferredRunFiles
from nip.run_lock import run_directory_lock
from nip.utils.cpu import check_shared_cores
from nip.utils.signals import shield_resource_tracker, submitit_handler

log = logging.getLogger("nip")


def run_experiment(
    hyper_params: HyperParameters,
    settings: ExperimentSettings,
    on_accepted: Callable[[], None] | None = None,
):
    """Build the scenario and the trainer, train (or resume) and test.

    Parameters
    ----------
    hyper_params : HyperParameters
        The experiment.
    settings : ExperimentSettings
        Where and how it runs.
    on_accepted : callable, optional
        Called once every check has passed (the trainer is built, its checkpoint, if any,
        loaded and found to be of the same experiment), just before training starts: the
        command line writes the run's ``.hydra/`` and ``run.log`` there.

    Returns
    -------
    TensorDictRlTrainer
        The trainer after training, for inspection.
    """
    from nip.factory import build_scenario_instance, build_trainer

    validate_hyper_params(hyper_params)
    with run_directory_lock(settings.run_dir):
        scenario_instance = build_scenario_instance(hyper_params, settings)
        trainer = build_trainer(hyper_params, scenario_instance, settings)
        if on_accepted is not None:
            on_accepted()
        try:
            trainer.train()
        finally:
            if settings.wandb_run is not None:
                settings.wandb_run.finish()
    return trainer


def settings_from_hyper_params(
    hyper_params: HyperParameters,
    run_dir: Path,
    *,
    sweep_dir: Path | None = None,
    job_overrides: list[str] | tuple[str, ...] = (),
) -> ExperimentSettings:
    """Runtime settings for a run in ``run_dir`` (starting its W&B run with ``logger=wandb``).

    ``sweep_dir`` and ``job_overrides`` name and group the W&B run of a sweep's job.
    """
    from nip.wandb_run import start_wandb_run

    if hyper_params.device.num_threads:
        torch.set_num_threads(hyper_params.device.num_threads)
    elif os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        # A SLURM job uses the CPUs it was given, not every core of the node.
        torch.set_num_threads(int(os.environ["SLURM_CPUS_PER_TASK"]))
    device = resolve_device(hyper_params.device.type)
    if device.type == "cpu":
        warning = check_shared_cores(torch.get_num_threads())
        if warning:
            log.warning(warning)
    return ExperimentSettings(
        run_dir=Path(run_dir),
        device=device,
        cache_dir=Path(hyper_params.cache_dir).expanduser(),
        progress_bar=hyper_params.logger.progress_bar,
        wandb_run=start_wandb_run(
            hyper_params, run_dir, sweep_dir=sweep_dir, job_overrides=job_overrides
        ),
        base_run_checkpoint=hyper_params.base_run.run_id,
        logger=log,
    )


# Jobs of a local (in-process) multirun that failed, reported when the sweep ends.
FAILED_JOBS: list[str] = []


def _sweep_of_this_job() -> Path | None:
    """The sweep directory when this job is part of a multirun, else ``None``."""
    from hydra.types import RunMode

    hydra_config = HydraConfig.get()
    if hydra_config.mode != RunMode.MULTIRUN:
        return None
    return Path(hydra_config.sweep.dir)


def _in_local_multirun() -> bool:
    """Whether this job is one of a multirun whose jobs run in this process."""
    launcher = str(HydraConfig.get().launcher.get("_target_", ""))
    return _sweep_of_this_job() is not None and launcher.endswith("BasicLauncher")


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    if _in_local_multirun():
        # A job that fails (its one line is already printed) must not end the other jobs
        # of the sweep; signals still stop the whole sweep.
        try:
            _run_job(cfg)
        except SystemExit as e:
            if e.code in (0, None) or (isinstance(e.code, int) and e.code >= 128):
                raise
            hydra_config = HydraConfig.get()
            FAILED_JOBS.append(f"{hydra_config.job.num} ({' '.join(hydra_config.overrides.task)})")
        return
    _run_job(cfg)


def _run_job(cfg: DictConfig) -> None:
    """One run, with one-line errors."""

    def task():
        if submitit_handler(signal.SIGUSR2) is not None:
            shield_resource_tracker()
        hyper_params = OmegaConf.to_object(cfg)
        validate_hyper_params(hyper_params)
        hydra_config = HydraConfig.get()
        run_dir = Path(hydra_config.runtime.output_dir)
        overrides = list(hydra_config.overrides.task)
        # The lock comes before anything of ours is written (the W&B run id, checkpoints,
        # metrics); .hydra/ and run.log only once the run is accepted.
        try:
            with (
                run_directory_lock(run_dir),
                DeferredRunFiles(run_dir, cfg, hydra_config, overrides) as run_files,
            ):
                sweep = _sweep_of_this_job()
                settings = settings_from_hyper_params(
                    hyper_params,
                    run_dir,
                    sweep_dir=sweep,
                    job_overrides=overrides if sweep is not None else (),
                )
                run_experiment(hyper_params, settings, on_accepted=run_files.accept)
        except NipInterrupted as e:
            _requeue_if_submitit(e)
            raise

    guarded(task)


def _requeue_if_submitit(stop: NipInterrupted) -> None:
    """In a submitit job stopped by SIGUSR2 (preemption or time limit), requeue it.

    The trainer has written its checkpoint; submitit's own SIGUSR2 handler (back in place
    now) asks SLURM to requeue the job (counting time-outs against ``max_num_timeout``) and
    exits; the requeued job runs the same command, which resumes from that checkpoint.
    Returns only where there is nothing to hand over to.
    """
    handler = submitit_handler(signal.SIGUSR2)
    if handler is None or signal.SIGUSR2 not in stop.signals:
        return
    print(f"nip: {stop.what_happened}; requeueing the SLURM job to resume", file=sys.stderr)
    sys.stderr.flush()
    handler(signal.SIGUSR2, None)


def main() -> None:
    """Register the schema, check the overrides, and hand over to Hydra."""
    register_configs()
    sys.argv = [sys.argv[0], *with_sweeps_searchpath(sys.argv[1:])]
    preflight("config", sys.argv[1:])
    _hydra_main()
    if FAILED_JOBS:
        print(
            f"nip: error: {len(FAILED_JOBS)} job(s) of the sweep failed: {'; '.join(FAILED_JOBS)}",
            file=sys.stderr,
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
