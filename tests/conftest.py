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


# The slowest test files, slowest first. `make test` gives whole files to two xdist workers in
# collection order (``--dist loadfile --no-loadscope-reorder``); starting the long ones first
# keeps one of them from starting last while the other worker idles. Order within a file is
# unchanged.
SLOW_FILES = (
    "test_slurm.py",
    "test_resume_cli.py",
    "test_cli.py",
    "test_faults.py",
    "test_wandb_offline.py",
    "test_install.py",
)


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        name = item.path.name
        return SLOW_FILES.index(name) if name in SLOW_FILES else len(SLOW_FILES)

    items.sort(key=rank)


def _slurm_evidence() -> list[str]:
    import sys

    return list(getattr(sys.modules.get("tests.test_slurm"), "EVIDENCE", []))


def pytest_configure(config):
    config.nip_slurm_evidence = []


def pytest_sessionfinish(session):
    """On an xdist worker, send what the SLURM tests saw to the controller, which prints it."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["nip_slurm_evidence"] = _slurm_evidence()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """Collect a finished xdist worker's SLURM evidence (see ``pytest_sessionfinish``)."""
    lines = getattr(node, "workeroutput", {}).get("nip_slurm_evidence", [])
    node.config.nip_slurm_evidence.extend(lines)


def pytest_terminal_summary(terminalreporter, config):
    """Quote what the SLURM tests saw (preemption and time-out log lines, sacct records),
    whether they ran in this process or on an xdist worker."""
    lines = config.nip_slurm_evidence + _slurm_evidence()
    if lines:
        terminalreporter.section("SLURM jobs")
        for line in lines:
            terminalreporter.write_line(line)
