"""Reproducible seeding: one experiment seed reaches every generator.

Seeds for parts of the experiment (an agent's initialisation, a dataset split) are derived
with SHA-256 rather than Python's ``hash``, which is salted per process.
"""

import hashlib
import random

import numpy as np
import torch


def derive_seed(base_seed: int, *names: object) -> int:
    """A 63-bit seed determined by ``base_seed`` and the given names, stable across processes."""
    text = "/".join([str(base_seed), *map(str, names)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def set_global_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A dedicated torch generator seeded with ``seed``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def fork_rng(device: torch.device | str):
    """A context in which the global generators of the CPU and of ``device`` may be used
    freely: their states are restored on exit, so the streams outside do not move.

    Parameters
    ----------
    device : torch.device or str
        The device the work runs on; a CUDA device's generator is forked too.
    """
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.random.fork_rng(devices=[index], device_type="cuda")
    return torch.random.fork_rng(devices=[])
