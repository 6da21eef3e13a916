"""Resolvers that size a SLURM / submitit job from the run's own settings.

The launcher presets (``conf/hydra/launcher/slurm.yaml``, ``local.yaml``) ask for as many
CPUs as the run uses threads and for a GPU when it runs on CUDA, so a sweep's request
follows its ``device`` settings instead of being set twice.
"""

from omegaconf import OmegaConf

# CPUs asked for when ``device.num_threads`` is left to torch (null): torch's intra-op
# parallelism gains little beyond this for the GI agents, and small requests schedule sooner.
DEFAULT_JOB_CPUS = 4


def job_cpus(num_threads: int | None) -> int:
    """CPUs per task for a run with ``device.num_threads`` (``None``: the default)."""
    return int(num_threads) if num_threads else DEFAULT_JOB_CPUS


def job_gpus(device_type: str) -> int | None:
    """GPUs per node: one for ``device=cuda``; otherwise no request (``auto`` asks for none).

    ``None`` leaves ``--gpus-per-node`` out, which clusters without GPUs also accept.
    """
    return 1 if device_type == "cuda" else None


def register_resolvers() -> None:
    """Register ``${nip.job_cpus:...}`` and ``${nip.job_gpus:...}`` (idempotent)."""
    for name, function in (("nip.job_cpus", job_cpus), ("nip.job_gpus", job_gpus)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)
