"""Shared fixtures."""

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def cache_dir(tmp_path_factory) -> Path:
    """A dataset cache shared by the tests of one session."""
    return tmp_path_factory.getbasetemp() / "dataset_cache"


@pytest.fixture
def small_datasets(monkeypatch):
    """Random pairs instead of generated ones, for tests about training rather than data."""
    from tests.helpers import random_pairs, use_datasets

    use_datasets(monkeypatch, random_pairs(80, 6), random_pairs(20, 6, 1))


@pytest.fixture
def trainer_datasets(monkeypatch):
    """Random pairs (120 train, 30 test) for tests about the trainer rather than data."""
    from tests.helpers import random_pairs, use_datasets

    use_datasets(monkeypatch, random_pairs(120, 6, 0), random_pairs(30, 6, 1))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A one-iteration GI NIP run (tested, checkpointed), trained once per session for the
    tests that only read it (visualise, probe, report); they must not change what it holds."""
    import subprocess
    import sys

    from tests.helpers import TINY_DATA_OVERRIDES

    base = tmp_path_factory.mktemp("trained_run")
    run_dir = base / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nip.run",
            "trainer.num_iterations=1",
            *TINY_DATA_OVERRIDES,
            f"cache_dir={base / 'cache'}",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return run_dir


def pytest_terminal_summary(terminalreporter):
    """Quote what the SLURM tests saw (preemption and time-out log lines, sacct records)."""
    import sys

    module = sys.modules.get("tests.test_slurm")
    lines = getattr(module, "EVIDENCE", [])
    if lines:
        terminalreporter.section("SLURM jobs")
        for line in lines:
            terminalreporter.write_line(line)
