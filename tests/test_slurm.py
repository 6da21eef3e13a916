"""Sweeps on a real SLURM cluster through ``hydra/launcher=slurm``.

Needs a running one-node cluster (``ci/slurm_setup.sh start``, which ``.ci/run`` calls);
as root the fixture starts one itself. Each test quotes what SLURM and submitit logged into
the end-of-session summary (see ``tests/conftest.py``), so a CI log shows the preemption and
the time-out as they happened.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import TINY_OVERRIDES
from tests.test_cli import ROOT, metrics

SETUP = ROOT / "ci" / "slurm_setup.sh"
# Lines quoted at the end of the test session (tests/conftest.py prints them).
EVIDENCE: list[str] = []

# The launcher preset, with what a 2-CPU test node can give (the preset asks for 16 GB).
SLURM = ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.mem_gb=1"]
# Long enough to be interrupted mid-run (about 20 s of training), with no periodic
# checkpoint and no test before the end: whatever survives an interruption is the stop
# checkpoint written on the signal.
LONG = ["trainer.num_iterations=300", "checkpoint.interval=1000", "trainer.test_interval=0"]


def _cluster_up() -> bool:
    if shutil.which("scontrol") is None:
        return False
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    return ping.returncode == 0 and "UP" in ping.stdout


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running cluster (started here as root), the dataset cache and the W&B settings."""
    if not _cluster_up():
        if os.geteuid() != 0:
            reason = "no SLURM cluster, and starting one (ci/slurm_setup.sh) needs root"
            if os.environ.get("NIP_REQUIRE_SLURM") == "1":
                pytest.fail(reason)
            pytest.skip(reason)
        started = subprocess.run(["bash", str(SETUP), "start"], capture_output=True, text=True)
        assert started.returncode == 0, started.stdout + started.stderr
    base = tmp_path_factory.mktemp("slurm")
    # W&B offline, as a cluster without internet access would run it.
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(base),
        "NIP_CACHE_DIR": str(base / "cache"),
    }
    return base, env


def _nip(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nip.run", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _job_logs(sweep: Path) -> str:
    """Everything the sweep's SLURM jobs wrote to stderr, over all their runs."""
    return "\n".join(p.read_text() for p in sorted(sweep.glob(".submitit/*/*_log.err")))


def _job_ids(sweep: Path) -> list[str]:
    """SLURM ids of the sweep's jobs: submitit's folders holding a job's pickle (an array's
    own folder holds only its submission script)."""
    names = [p.name for p in sweep.glob(".submitit/*") if (p / f"{p.name}_submitted.pkl").exists()]
    return sorted(names, key=lambda name: [int(part) for part in name.split("_")])


def _sacct(job_id: str) -> list[str]:
    """sacct's records of the job's allocations (one per start), polled until it is done."""
    deadline = time.monotonic() + 30
    while True:
        out = subprocess.run(
            ["sacct", "-n", "-X", "-D", "-P", "-j", job_id, "-o", "JobID,Partition,State"],
            capture_output=True,
            text=True,
        ).stdout.split()
        # sacct trails the job's real state by a second or so.
        if out and out[-1].endswith("COMPLETED") or time.monotonic() > deadline:
            return out
        time.sleep(0.5)


def _wandb_runs(run_dir: Path) -> list[str]:
    """The W&B run id of each start of the run (offline runs in its ``wandb/``)."""
    return [p.name.rsplit("-", 1)[1] for p in sorted(run_dir.glob("wandb/offline-run-*"))]


def _quote(title: str, lines: list[str]) -> None:
    EVIDENCE.append(f"{title}:")
    EVIDENCE.extend(f"    {line}" for line in lines)


def _wait_for_lines(path: Path, count: int, process: subprocess.Popen, limit: float = 120):
    """Wait until the metrics file has ``count`` lines (the job is well into training)."""
    deadline = time.monotonic() + limit
    while not (path.exists() and len(path.read_text().splitlines()) >= count):
        if process.poll() is not None or time.monotonic() > deadline:
            out, err = process.communicate()
            pytest.fail(f"the job never got to {count} iterations:\n{out}\n{err}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def uninterrupted(slurm):
    """Metrics of the LONG run straight through, on this machine without SLURM."""
    base, env = slurm
    run_dir = base / "uninterrupted"
    result = _nip(env, *TINY_OVERRIDES, *LONG, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    return metrics(run_dir)


def test_two_job_sweep_and_a_relaunch_that_skips_finished_jobs(slurm):
    base, env = slurm
    sweep = base / "sweep"
    args = [
        "-m",
        *SLURM,
        *TINY_OVERRIDES,
        "trainer.num_iterations=3",
        "seed=1,2",
        "logger=wandb",
        "logger.mode=offline",
        f"hydra.sweep.dir={sweep}",
    ]
    result = _nip(env, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    finished = {}
    for job in ("0", "1"):
        finished[job] = metrics(sweep / job)
        assert finished[job][-1]["iteration"] == 3 and "test_mean_accuracy" in finished[job][-1]
    assert finished["0"] != finished["1"]  # two seeds, two runs
    job_ids = _job_ids(sweep)
    assert len(job_ids) == 2
    records = [line for job_id in job_ids for line in _sacct(job_id)]
    assert all(line.endswith("|debug|COMPLETED") for line in records), records
    # Each job has its own offline W&B run.
    assert all(len(_wandb_runs(sweep / job)) == 1 for job in ("0", "1"))
    _quote("2-job sweep on SLURM (sacct)", records)

    # The same command again: both jobs find their finished runs and end at once.
    again = _nip(env, *args)
    assert again.returncode == 0, again.stdout + again.stderr
    for job in ("0", "1"):
        assert metrics(sweep / job) == finished[job]
        assert "is already complete" in (sweep / job / "run.log").read_text()
    relaunch = [line for job_id in _job_ids(sweep)[2:] for line in _sacct(job_id)]
    assert len(relaunch) == 2
    _quote("relaunched sweep (sacct)", relaunch)


def _interrupted_job(slurm, name: str, launcher: list[str], interrupt) -> tuple[Path, str]:
    """Launch the LONG run as a one-job sweep, ``interrupt()`` it mid-training, wait for it."""
    base, env = slurm
    sweep = base / name
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nip.run",
            "-m",
            *SLURM,
            *launcher,
            *TINY_OVERRIDES,
            *LONG,
            "logger=wandb",
            "logger.mode=offline",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_lines(sweep / "0" / "metrics.jsonl", 20, process)
        interrupt()
        out, err = process.communicate(timeout=400)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, out + err
    [job_id] = _job_ids(sweep)
    # The requeued job continued the same W&B run.
    run_id = (sweep / "0" / "wandb_run_id.txt").read_text().strip()
    assert _wandb_runs(sweep / "0")[1:] and set(_wandb_runs(sweep / "0")) == {run_id}
    return sweep, job_id


def test_preempted_job_is_requeued_and_ends_as_if_uninterrupted(slurm, uninterrupted):
    """A job of a higher-priority partition preempts ours mid-run: submitit's signal makes
    the trainer write a checkpoint of the last iteration boundary, the job is requeued, and
    the requeued job resumes to exactly the metrics of an uninterrupted run."""
    cpus = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()

    def preempt():
        # All of the node's CPUs, in the partition that preempts debug's jobs.
        subprocess.run(
            [
                "sbatch",
                "-p",
                "urgent",
                "-c",
                cpus,
                "--mem=100M",
                "-o",
                "/dev/null",
                "--wrap",
                "sleep 2",
            ],
            check=True,
            capture_output=True,
        )

    sweep, job_id = _interrupted_job(slurm, "preempted", [], preempt)
    logs = _job_logs(sweep)
    caught = [line for line in logs.splitlines() if "this job is preempted" in line]
    stopped = [line for line in logs.splitlines() if "requeueing the SLURM job" in line]
    assert caught and stopped, logs
    records = _sacct(job_id)
    assert records[0].endswith("|debug|REQUEUED") and records[-1].endswith("|COMPLETED")
    assert metrics(sweep / "0") == uninterrupted
    # Nothing but the iteration in progress was redone: the stop checkpoint was the resume
    # point (checkpoint.interval is 1000).
    assert "a checkpoint after" in stopped[0] and "completed iterations" in stopped[0]
    _quote("preempted job", [*caught, *stopped, *records, "final metrics == uninterrupted run"])


def test_timed_out_job_is_requeued_and_resumes(slurm, uninterrupted):
    """A job warned of its time limit writes its stop checkpoint and is requeued as timed
    out (counted against ``max_num_timeout``); the requeued job finishes the run with exactly
    the uninterrupted metrics.

    On a cluster the warning is the USR2 that ``--signal=USR2@signal_delay_s`` sends, at a
    moment SLURM picks up to a minute early; the test sends that same signal to the job
    itself, mid-training. submitit judges time-out or preemption by the job's age against
    ``timeout_min`` (below ten minutes, any warning is a time-out), as it does on a cluster.
    """
    sweep_dir = slurm[0] / "timed_out"

    def warn_of_time_limit():
        [job_id] = _job_ids(sweep_dir)
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True, capture_output=True)

    launcher = ["hydra.launcher.timeout_min=5", "hydra.launcher.max_num_timeout=2"]
    sweep, job_id = _interrupted_job(slurm, "timed_out", launcher, warn_of_time_limit)
    logs = _job_logs(sweep)
    caught = [line for line in logs.splitlines() if "this job is timed-out" in line]
    stopped = [line for line in logs.splitlines() if "requeueing the SLURM job" in line]
    assert caught and stopped, logs
    records = _sacct(job_id)
    assert "REQUEUED" in records[0] and records[-1].endswith("|COMPLETED"), records
    assert metrics(sweep / "0") == uninterrupted
    _quote("timed-out job", [*caught, *stopped, *records, "final metrics == uninterrupted run"])
