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
