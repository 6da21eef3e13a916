"""Faults a run must survive without corrupting its directory (real processes and signals)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from nip.run_lock import RunDirectoryLockedError, run_directory_lock
from tests.test_cli import ROOT, nip, tiny


def test_second_run_on_a_directory_is_refused_and_a_killed_run_leaves_no_lock(tmp_path):
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    first = subprocess.Popen(
        [sys.executable, "-m", "nip.run", *tiny(run_dir, cache, iterations=500)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "metrics.jsonl").exists():
            assert first.poll() is None, "the first run ended early"
            assert time.monotonic() < deadline, "the first run did not start training"
            time.sleep(0.2)
        second = nip("nip.run", *tiny(run_dir, cache, iterations=500))
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert lines[0].startswith("nip: error: the run directory")
        assert f"pid {first.pid}" in lines[0]
        with pytest.raises(RunDirectoryLockedError):
            with run_directory_lock(run_dir):
                pass
        assert first.poll() is None  # the first run goes on undisturbed
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # The kernel released the lock with the killed process: nothing stale remains.
    with run_directory_lock(run_dir):
        pass


def test_lock_is_reentrant_within_a_process(tmp_path):
    with run_directory_lock(tmp_path), run_directory_lock(tmp_path):
        pass
    with run_directory_lock(tmp_path):
        pass
    assert os.path.exists(tmp_path / ".lock")


def test_a_reader_checking_the_lock_does_not_refuse_a_starting_run(tmp_path):
    """nip.summarize tries the lock (shared) to tell running jobs; a run starting meanwhile
    waits for it instead of failing as if the directory were in use."""
    import fcntl
    import threading

    fd = os.open(tmp_path / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    threading.Timer(0.3, os.close, [fd]).start()
    with run_directory_lock(tmp_path):
        pass


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda hp: setattr(hp.checkpoint, "interval", 0), "checkpoint.interval must be >= 1"),
        (lambda hp: setattr(hp.device, "num_threads", -1), "device.num_threads must be >= 1"),
        (lambda hp: setattr(hp.trainer, "max_grad_norm", 0.0), "trainer.max_grad_norm"),
        (lambda hp: setattr(hp.trainer, "pretrain_epochs", 0), "trainer.pretrain_epochs"),
        (lambda hp: setattr(hp.scenario, "wl_iterations", 0), "scenario.wl_iterations"),
        (lambda hp: setattr(hp.scenario.prover, "d_gnn", 0), "scenario.prover.d_gnn"),
        (lambda hp: setattr(hp.scenario.verifier, "num_heads", 0), "scenario.verifier.num_heads"),
        (lambda hp: setattr(hp.scenario, "graph_sizes", [7, 30000]), "at most 256 nodes"),
        (
            lambda hp: setattr(hp.trainer, "frames_per_batch", 8 * 10**9),
            "trainer.frames_per_batch=8000000000 needs about",
        ),
        (
            lambda hp: setattr(hp.scenario.prover, "d_gin_mlp", 10**9),
            "the agents' networks .* need about",
        ),
    ],
)
def test_out_of_range_settings_are_refused_at_validation(tmp_path, change, message):
    from nip.config import validate_hyper_params
    from nip.errors import NipConfigError
    from tests.helpers import tiny_hyper_params

    hp = tiny_hyper_params(tmp_path)
    change(hp)
    with pytest.raises(NipConfigError, match=message) as error:
        validate_hyper_params(hp)
    assert "\n" not in str(error.value)


@pytest.fixture
def tiny_run(tmp_path, trainer_datasets):
    """Run the tiny settings in ``tmp_path / "run"``; returns a function of overrides."""
    from nip.run import run_experiment
    from tests.helpers import run_settings, tiny_hyper_params

    def run(**trainer_overrides):
        hp = tiny_hyper_params(tmp_path / "cache", **trainer_overrides)
        hp.checkpoint.interval = 1
        return run_experiment(hp, run_settings(tmp_path / "run"))

    return run


def test_diverging_run_stops_with_one_line(tmp_path, tiny_run):
    from nip.errors import NipRunError

    with pytest.raises(NipRunError, match="training diverged at iteration 0") as error:
        tiny_run(num_iterations=4, lr=1e6)
    text = str(error.value)
    assert "\n" not in text and "no checkpoint had been written yet" in text
    assert "try a lower trainer.lr (now 1e+06)" in text
    assert not (tmp_path / "run" / "checkpoints" / "state.pt").exists()


def test_non_finite_loss_is_never_stepped_or_checkpointed(tmp_path, tiny_run, monkeypatch):
    """The loss turns NaN in the first minibatch of iteration 2 (two minibatches per
    iteration): the run stops there and the checkpoint of iteration 2 stays as written."""
    import torch

    from nip.checkpointing import load_checkpoint_file
    from nip.errors import NipRunError
    from nip.objectives.ppo import MultiAgentClipPPOLoss

    original = MultiAgentClipPPOLoss.total_loss
    calls = []

    def failing_total_loss(self, loss_vals):
        calls.append(1)
        total = original(self, loss_vals)
        return total * float("nan") if len(calls) == 5 else total

    monkeypatch.setattr(MultiAgentClipPPOLoss, "total_loss", failing_total_loss)
    with pytest.raises(NipRunError) as error:
        tiny_run(num_iterations=4)
    assert str(error.value).startswith("training diverged at iteration 2 (loss nan)")
    assert "the checkpoint of iteration 2 is intact" in str(error.value)
    state = load_checkpoint_file(tmp_path / "run" / "checkpoints" / "state.pt")
    assert state["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in state["policy"].values() if v.is_floating_point())


def test_torn_undecodable_last_metrics_line_is_redone(tmp_path, tiny_run):
    """A crash mid-write can leave a torn line with broken UTF-8: resuming drops it."""
    tiny_run(num_iterations=2)
    path = tmp_path / "run" / "metrics.jsonl"
    path.write_bytes(path.read_bytes() + b'{"iteration": 2, "\xff\xfe')
    tiny_run(num_iterations=3)
    rows = [json.loads(line) for line in path.read_bytes().decode("utf-8").splitlines()]
    assert [r["iteration"] for r in rows] == [0, 1, 2, 2, 3]


def test_damaged_metrics_line_with_lines_after_it_is_refused(tmp_path, tiny_run):
    from nip.errors import NipRunError

    tiny_run(num_iterations=2)
    path = tmp_path / "run" / "metrics.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[0] = b"\xff\xfe garbage\n"
    path.write_bytes(b"".join(lines))
    before = path.read_bytes()
    with pytest.raises(NipRunError, match="line 1 is damaged"):
        tiny_run(num_iterations=3)
    assert path.read_bytes() == before


def test_lost_metrics_file_is_refused(tmp_path, tiny_run):
    from nip.errors import NipRunError

    tiny_run(num_iterations=2)
    checkpoint = (tmp_path / "run" / "checkpoints" / "state.pt").read_bytes()
    (tmp_path / "run" / "metrics.jsonl").unlink()
    with pytest.raises(NipRunError, match="the history is incomplete"):
        tiny_run(num_iterations=3)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
    assert (tmp_path / "run" / "checkpoints" / "state.pt").read_bytes() == checkpoint


def test_interrupted_writes_leave_no_litter_after_the_next_start(tmp_path, tiny_run):
    tiny_run(num_iterations=1)
    litter = [
        tmp_path / "run" / "checkpoints" / ".state.pt.abc123.tmp",
        tmp_path / "run" / ".training_curves.png.999.tmp.png",
        tmp_path / "run" / ".metrics.jsonl.x1.tmp",
    ]
    for path in litter:
        path.write_bytes(b"half a file")
    tiny_run(num_iterations=2)
    assert not any(path.exists() for path in litter)
    assert (tmp_path / "run" / "checkpoints" / "state.pt").is_file()


def test_unwritable_evaluation_output_fails_before_the_work(tmp_path, monkeypatch):
    import nip.evaluate
    from nip.errors import NipConfigError
    from nip.evaluate import DatasetArgs, EvaluateArgs, evaluate

    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory\n")
    monkeypatch.setattr(
        nip.evaluate, "run_episodes", lambda *a, **k: pytest.fail("evaluated before checking")
    )
    monkeypatch.setattr(nip.evaluate, "resolve_checkpoint_path", lambda p: tmp_path / "state.pt")
    args = EvaluateArgs(
        checkpoint="unused", dataset=DatasetArgs(path="unused.pt"), output=str(blocker / "x.json")
    )
    with pytest.raises(NipConfigError, match="cannot write there"):
        evaluate(args)


SIGNAL_RUN_ARGS = ["checkpoint.interval=1000", "trainer.test_interval=0"]


@pytest.fixture(scope="module")
def straight_signal_run(tmp_path_factory):
    """Metrics of an uninterrupted 12-iteration tiny run (no checkpoints until the end)."""
    from tests.test_cli import metrics

    base = tmp_path_factory.mktemp("signals")
    run_dir = base / "straight"
    result = nip("nip.run", *tiny(run_dir, base / "cache", 12), *SIGNAL_RUN_ARGS)
    assert result.returncode == 0, result.stderr
    return metrics(run_dir), base / "cache"


@pytest.mark.parametrize(
    ("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGUSR2, 140)]
)
def test_stop_signal_writes_a_checkpoint_and_the_rerun_resumes_exactly(
    tmp_path, straight_signal_run, sig, status
):
    """A signal mid-run: one line, status 128 + signal, a checkpoint of the last iteration
    boundary although checkpoint.interval is 1000, and a re-run ends exactly like the
    uninterrupted run."""
    from tests.test_cli import metrics

    expected, cache = straight_signal_run
    run_dir = tmp_path / "run"
    args = [*tiny(run_dir, cache, 12), *SIGNAL_RUN_ARGS]
    process = subprocess.Popen(
        [sys.executable, "-m", "nip.run", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    path = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (path.exists() and len(path.read_text().splitlines()) >= 2):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == status, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"nip: stopped by {signal.Signals(sig).name} during iteration")
    assert "Traceback" not in stderr
    from nip.checkpointing import load_checkpoint_file

    state = load_checkpoint_file(run_dir / "checkpoints" / "state.pt")
    assert 2 <= state["iteration"] < 12
    assert state["metrics_lines"] == state["iteration"]
    result = nip("nip.run", *args)
    assert result.returncode == 0, result.stderr
    assert metrics(run_dir) == expected


def test_full_disk_while_checkpointing_is_one_line_and_keeps_the_last_checkpoint(
    tmp_path, tiny_run, monkeypatch
):
    """The disk fills up during the second checkpoint (each writes three files, each
    fsynced): one line naming the file and the free space; the first checkpoint is intact,
    no temporary file is left, and once there is space again the run resumes."""
    import errno

    from nip.checkpointing import load_checkpoint_file
    from nip.errors import NipRunError

    real_fsync = os.fsync
    calls = []

    def fsync(fd):
        calls.append(fd)
        if len(calls) >= 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(NipRunError, match="no space left on the device to write") as error:
        tiny_run(num_iterations=3)
    assert "MiB free" in str(error.value) and "is intact" in str(error.value)
    checkpoints = tmp_path / "run" / "checkpoints"
    assert load_checkpoint_file(checkpoints / "state.pt")["iteration"] == 1
    assert not list(checkpoints.glob(".*.tmp"))
    monkeypatch.setattr(os, "fsync", real_fsync)
    tiny_run(num_iterations=3)
    assert load_checkpoint_file(checkpoints / "state.pt")["iteration"] == 3


def test_full_disk_while_appending_metrics_is_one_line(tmp_path, monkeypatch):
    import errno
    import pathlib

    from nip.errors import NipRunError
    from nip.metrics import MetricsFile

    metrics = MetricsFile(tmp_path / "metrics.jsonl")
    metrics.append({"iteration": 0})
    real_open = pathlib.Path.open

    class FullFile:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, text):
            self.f.write(text[:5])  # part of the line reaches the disk
            raise OSError(errno.ENOSPC, "No space left on device")

    def open_(self, mode="r", *args, **kwargs):
        f = real_open(self, mode, *args, **kwargs)
        return FullFile(f) if mode == "a" else f

    monkeypatch.setattr(pathlib.Path, "open", open_)
    with pytest.raises(NipRunError, match="its complete lines are intact"):
        metrics.append({"iteration": 1})
    monkeypatch.setattr(pathlib.Path, "open", real_open)
    assert MetricsFile(tmp_path / "metrics.jsonl").read() == [{"iteration": 0}]


def test_evaluating_a_checkpoint_that_asks_for_a_huge_model_is_refused(tmp_path, tiny_run):
    """The checkpoint's stored settings decide the networks: checked before allocating."""
    from nip.checkpointing import atomic_torch_save, load_checkpoint_file
    from nip.errors import NipConfigError
    from nip.evaluate import DatasetArgs, EvaluateArgs, evaluate
    from nip.scenarios.graph_iso.dataset import save_pairs_file
    from tests.helpers import random_pairs

    tiny_run(num_iterations=1)
    state = load_checkpoint_file(tmp_path / "run" / "checkpoints" / "state.pt")
    state["hyper_params"]["scenario"]["prover"]["d_gin_mlp"] = 10**9
    atomic_torch_save(state, tmp_path / "huge.pt")
    save_pairs_file(random_pairs(10, 6), tmp_path / "pairs.pt")
    args = EvaluateArgs(
        checkpoint=str(tmp_path / "huge.pt"),
        dataset=DatasetArgs(path=str(tmp_path / "pairs.pt")),
        device="cpu",
        output=str(tmp_path / "out.json"),
    )
    with pytest.raises(NipConfigError, match="need about .* GB for a batch of 10"):
        evaluate(args)
