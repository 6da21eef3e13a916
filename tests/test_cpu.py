"""Detecting busy processes that share the cores with a run."""

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import nip.run
from nip.utils.cpu import other_busy_tasks, runnable_tasks, shared_cores_warning
from tests.helpers import tiny_hyper_params


def test_runnable_tasks_reads_the_running_count(tmp_path):
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("1.97 2.04 1.57 3/412 1454\n")
    assert runnable_tasks(loadavg) == 3
    loadavg.write_text("garbage\n")
    assert runnable_tasks(loadavg) is None
    assert runnable_tasks(tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("threads", "other", "cores", "warns"),
    [
        (2, 1, 2, True),  # one busy process on a 2-core machine
        (2, 0, 2, False),  # idle machine
        (1, 1, 2, False),  # one thread fits beside it
        (2, 1, 4, False),  # enough cores for both
        (4, 3, 4, True),
        (2, 5, None, False),  # unknown core count
    ],
)
def test_warning_only_when_threads_and_busy_processes_exceed_the_cores(
    threads, other, cores, warns
):
    message = shared_cores_warning(threads, other, cores)
    assert (message is not None) == warns
    if warns:
        assert f"device.num_threads={max(cores - other, 1)}" in message


@pytest.mark.skipif(not Path("/proc/loadavg").exists(), reason="Linux /proc only")
def test_a_busy_process_is_counted():
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert other_busy_tasks() >= 1
    finally:
        hog.kill()
        hog.wait()


def test_run_logs_the_warning_on_a_shared_machine(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(nip.run, "check_shared_cores", lambda n: shared_cores_warning(n, 1, 2))
    hp = tiny_hyper_params(tmp_path / "cache")
    hp.device.num_threads = 2
    before = torch.get_num_threads()
    try:
        with caplog.at_level(logging.WARNING, logger="nip"):
            nip.run.settings_from_hyper_params(hp, tmp_path / "run")
    finally:
        torch.set_num_threads(before)
    assert any("other busy process" in r.getMessage() for r in caplog.records)
