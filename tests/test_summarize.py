"""``python -m nip.summarize``: settings, statuses, statistics, files and one-line errors."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from nip.checkpointing import CHECKPOINT_FORMAT_VERSION, atomic_torch_save, atomic_write_json
from nip.run_lock import run_directory_lock
from nip.summarize import curve, main, summarize
from tests.helpers import TINY_OVERRIDES

ROOT = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
AGENTS = ("prover", "verifier")


def write_job(
    sweep: Path,
    num: int,
    overrides: list[str],
    *,
    num_iterations: int,
    train: list[dict] = (),
    tests: list[dict] = (),
    checkpoint: tuple[int, bool] | None = None,
    trainer: dict | None = None,
) -> Path:
    """A job directory as the trainer leaves it: .hydra/, metrics.jsonl and a checkpoint.

    ``checkpoint`` is ``(iteration, tested)``; the state is written with the trainer's own
    atomic writer, with the keys that record progress (the weights are a stand-in).
    """
    job = sweep / str(num)
    hydra = job / ".hydra"
    hydra.mkdir(parents=True)
    # As nip/run_files.py writes them.
    (hydra / "overrides.yaml").write_text(OmegaConf.to_yaml(overrides))
    trainer = trainer or {"name": "ppo", "num_iterations": num_iterations}
    config = {"seed": 0, "trainer": trainer, "scenario": {"name": "graph_iso"}}
    (hydra / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
    lines = [*train, *tests]
    (job / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in lines))
    if checkpoint is not None:
        iteration, tested = checkpoint
        state = {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "iteration": iteration,
            "tested": tested,
            "agent_names": list(AGENTS),
            "policy": {"weight": torch.zeros(3)},
        }
        atomic_write_json(job / "checkpoints" / "metadata.json", {"package_name": "nip"})
        atomic_torch_save(state, job / "checkpoints" / "state.pt")
    return job


def train_lines(accuracies: list[float], rewards: dict[str, float] | None = None) -> list[dict]:
    """Training lines for iterations 0, 1, ... with constant per-agent returns."""
    rewards = rewards or dict.fromkeys(AGENTS, 0.0)
    return [
        {
            "iteration": i,
            "mean_accuracy": accuracy,
            "terminated_fraction": 0.0,
            "isomorphic_fraction": 0.5,
            "mean_episode_length": 3.0,
            **{f"{agent}.mean_episode_reward": r for agent, r in rewards.items()},
            **{f"{agent}.mean_value": 0.0 for agent in rewards},
        }
        for i, accuracy in enumerate(accuracies)
    ]


def final_test_line(
    iteration: int,
    accuracy: float = 0.5,
    *,
    isomorphic: float = 0.5,
    terminated: float = 0.0,
    length: float = 4.0,
) -> dict:
    """A test line as the trainer writes it (per-agent test keys included)."""
    return {
        "iteration": iteration,
        "test_mean_accuracy": accuracy,
        "test_terminated_fraction": terminated,
        "test_accept_fraction": 0.5,
        "test_reject_fraction": 0.5 - terminated,
        "test_isomorphic_fraction": isomorphic,
        "test_mean_episode_length": length,
        "prover.test_mean_episode_reward": 0.5,
    }


def finished_job(sweep: Path, num: int, overrides: list[str], n: int, **kwargs) -> Path:
    """A finished job: ``n`` training lines, a final test line at ``n``, tested checkpoint."""
    train = kwargs.pop("train", None) or train_lines([0.5] * n)
    return write_job(
        sweep,
        num,
        overrides,
        num_iterations=n,
        train=train,
        tests=[final_test_line(n, **kwargs)],
        checkpoint=(n, True),
    )


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def test_two_settings_two_seeds(tmp_path, capsys):
    """2 protocols x 2 seeds; hand-computed means and sample stds (ddof=1)."""
    sweep = tmp_path / "sweep"
    common = ["trainer.num_iterations=12", "scenario.num_train_pairs=200"]

    def overrides(protocol: str, seed: int) -> list[str]:
        return [*common, f"protocol={protocol}", f"seed={seed}"]

    # protocol=nip: accuracies 0.5 and 0.7, chance 0.6 and 0.7, last-10 train accuracy 1.0
    # and 0.5, prover return 1 and 3, verifier return 0.2 and 0.4.
    finished_job(
        sweep,
        0,
        overrides("nip", 1),
        12,
        accuracy=0.5,
        isomorphic=0.4,
        terminated=0.1,
        length=3.0,
        train=train_lines([0.0, 0.0] + [1.0] * 10, {"prover": 1.0, "verifier": 0.2}),
    )
    finished_job(
        sweep,
        1,
        overrides("nip", 2),
        12,
        accuracy=0.7,
        isomorphic=0.7,
        terminated=0.3,
        length=5.0,
        train=train_lines([0.5] * 12, {"prover": 3.0, "verifier": 0.4}),
    )
    finished_job(sweep, 2, overrides("debate", 1), 12, accuracy=0.8)
    finished_job(sweep, 3, overrides("debate", 2), 12, accuracy=0.8)
    (sweep / ".submitit").mkdir()  # not a job

    assert main([str(sweep)]) == 0

    header, rows = read_csv(sweep / "summary.csv")
    assert header[:5] == ["protocol", "seeds", "finished", "running", "failed"]
    assert header[5:] == [
        f"{stat}_{part}"
        for stat in (
            "test_accuracy",
            "test_terminated_fraction",
            "test_accept_fraction",
            "test_reject_fraction",
            "test_episode_length",
            "chance_accuracy",
            "train_accuracy_last10",
            "prover.reward_last10",
            "verifier.reward_last10",
        )
        for part in ("mean", "std")
    ]
    # Common overrides and seeds are not setting columns.
    assert not {"trainer.num_iterations", "scenario.num_train_pairs", "seed"} & set(header)
    assert [row["protocol"] for row in rows] == ["nip", "debate"]
    nip, debate = ({k: v for k, v in row.items()} for row in rows)
    assert (nip["seeds"], nip["finished"], nip["running"], nip["failed"]) == ("2", "2", "0", "0")
    expected = {
        "test_accuracy": (0.6, math.sqrt(0.02)),
        "test_terminated_fraction": (0.2, math.sqrt(0.02)),
        "test_episode_length": (4.0, math.sqrt(2)),
        "chance_accuracy": (0.65, math.sqrt(0.005)),
        "train_accuracy_last10": (0.75, math.sqrt(0.125)),
        "prover.reward_last10": (2.0, math.sqrt(2)),
        "verifier.reward_last10": (0.3, math.sqrt(0.02)),
    }
    for stat, (mean, std) in expected.items():
        assert float(nip[f"{stat}_mean"]) == pytest.approx(mean), stat
        assert float(nip[f"{stat}_std"]) == pytest.approx(std), stat
    assert float(nip["test_accuracy_std"]) == pytest.approx(0.1414, abs=1e-4)
    assert float(debate["test_accuracy_mean"]) == pytest.approx(0.8)
    assert float(debate["test_accuracy_std"]) == pytest.approx(0.0)

    out = capsys.readouterr().out
    assert "common overrides: trainer.num_iterations=12 scenario.num_train_pairs=200" in out
    table = out.splitlines()
    nip_line = next(line for line in table if line.startswith("nip "))
    assert "0.600 ± 0.141" in nip_line and "2/0/0" in nip_line
    assert f"wrote {sweep / 'summary.csv'}" in out
    assert f"wrote {sweep / 'learning_curves.png'}" in out
    assert (sweep / "learning_curves.png").read_bytes().startswith(PNG_SIGNATURE)


def test_running_failed_and_unknown_jobs(tmp_path, capsys):
    """Only finished jobs enter the statistics; a held lock is running; no files is failed."""
    sweep = tmp_path / "sweep"
    lr3 = ["trainer.num_iterations=12", "trainer.lr=1e-3"]
    finished_job(sweep, 0, [*lr3, "seed=1"], 12, accuracy=0.5)
    # Running: two iterations so far, its directory locked by a live process (this one).
    running = write_job(
        sweep, 1, [*lr3, "seed=2"], num_iterations=12, train=train_lines([0.4, 0.6])
    )
    (sweep / "2").mkdir()  # refused at config time: Hydra made the directory, nothing more
    # Stopped at iteration 5 (checkpointed, not tested); a torn last line from the crash.
    stopped = write_job(
        sweep,
        3,
        [*lr3, "seed=3"],
        num_iterations=12,
        train=train_lines([0.9] * 5),
        checkpoint=(5, False),
    )
    with (stopped / "metrics.jsonl").open("a") as f:
        f.write('{"iteration": 5, "mean_acc')
    # Crashed after its final test line, before the checkpoint that marks it tested.
    write_job(
        sweep,
        4,
        [*lr3, "seed=4"],
        num_iterations=12,
        train=train_lines([0.9] * 12),
        tests=[final_test_line(12, 0.9)],
        checkpoint=(12, False),
    )
    finished_job(sweep, 5, ["trainer.num_iterations=12", "trainer.lr=1e-4", "seed=1"], 12)

    with run_directory_lock(running):
        summary = summarize(sweep)
    statuses = {job.name: job.status for job in summary.jobs}
    assert statuses == {
        "0": "finished",
        "1": "running",
        "2": "failed",
        "3": "failed",
        "4": "failed",
        "5": "finished",
    }
    header, rows = read_csv(sweep / "summary.csv")
    assert header[0] == "trainer.lr" and "seed" not in header
    counts = [(r["trainer.lr"], r["seeds"], r["finished"], r["running"], r["failed"]) for r in rows]
    # Job 2's overrides are unknown (no .hydra/, no multirun.yaml): a setting of its own.
    assert counts == [
        ("1e-3", "4", "1", "1", "2"),
        ("?", "1", "0", "0", "1"),
        ("1e-4", "1", "1", "0", "0"),
    ]
    lr3_row = rows[0]
    assert float(lr3_row["test_accuracy_mean"]) == pytest.approx(0.5)  # the finished seed only
    assert lr3_row["test_accuracy_std"] == ""  # one seed: no standard deviation
    assert rows[1]["test_accuracy_mean"] == ""  # nothing finished

    # Once the lock is released the job is no longer running: it stopped, so it failed.
    assert {job.name: job.status for job in summarize(sweep).jobs}["1"] == "failed"
    main([str(sweep)])
    assert "failed jobs: 1 (2 iterations of 12), 2 (no files), 3 (5 iterations of 12)" in (
        capsys.readouterr().out
    )


def test_overrides_of_jobs_without_files_come_from_multirun_yaml(tmp_path, capsys):
    """multirun.yaml's plan names the setting of a job that wrote nothing, if it matches."""
    sweep = tmp_path / "sweep"
    plan = {
        "hydra": {
            "sweeper": {
                "_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
                "max_batch_size": None,
                "params": {"seed": "1,2,3"},
            },
            "overrides": {"task": ["trainer.num_iterations=2", "trainer.lr=1e-3,1e-4"]},
        }
    }
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(plan)))
    # Hydra's order: params first, the last key varying fastest; values as Hydra prints them.
    finished_job(sweep, 0, ["seed=1", "trainer.num_iterations=2", "trainer.lr=0.001"], 2)
    finished_job(sweep, 1, ["seed=1", "trainer.num_iterations=2", "trainer.lr=0.0001"], 2)
    finished_job(sweep, 2, ["seed=2", "trainer.num_iterations=2", "trainer.lr=0.001"], 2)
    (sweep / "3").mkdir()  # seed=2 trainer.lr=0.0001, refused before writing anything

    main([str(sweep)])
    _, rows = read_csv(sweep / "summary.csv")
    counts = [(r["trainer.lr"], r["finished"], r["failed"]) for r in rows]
    assert counts == [("0.001", "2", "0"), ("0.0001", "1", "1")]
    assert "2 planned job(s) have no directory yet" in capsys.readouterr().out

    # A plan that disagrees with a recorded job is not trusted.
    (sweep / "0" / ".hydra" / "overrides.yaml").write_text(
        OmegaConf.to_yaml(["seed=9", "trainer.num_iterations=2", "trainer.lr=0.001"])
    )
    main([str(sweep)])
    _, rows = read_csv(sweep / "summary.csv")
    assert [r["trainer.lr"] for r in rows] == ["0.001", "0.0001", "?"]


def test_curve_averages_the_seeds_present_at_each_iteration():
    iterations, mean, low, high = curve([[(0, 0.2), (1, 0.4), (2, 0.6)], [(0, 0.4), (1, 0.6)]])
    assert iterations.tolist() == [0, 1, 2]
    assert mean.tolist() == pytest.approx([0.3, 0.5, 0.6])
    assert low.tolist() == pytest.approx([0.2, 0.4, 0.6])
    assert high.tolist() == pytest.approx([0.4, 0.6, 0.6])


def test_out_dir_holds_a_valid_png_and_no_temporaries(tmp_path):
    import matplotlib.image

    sweep = tmp_path / "sweep"
    for num, lr in enumerate(("1e-3", "1e-4")):
        finished_job(sweep, num, [f"trainer.lr={lr}", "seed=1"], 3)
    write_job(sweep, 2, ["trainer.lr=1e-3", "seed=2"], num_iterations=3, train=train_lines([0.7]))
    out = tmp_path / "report" / "nested"
    assert main([str(sweep), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["learning_curves.png", "summary.csv"]
    assert not (sweep / "summary.csv").exists()
    png = out / "learning_curves.png"
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    height, width, _ = matplotlib.image.imread(png).shape
    assert height > 100 and width > 100


def summarize_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nip.summarize", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "does not exist"),
        ("empty", "no jobs in"),
        ("file", "is not a directory"),
        ("single run", "single run's directory"),
    ],
)
def test_bad_sweep_dir_is_one_line(tmp_path, kind, message):
    path = tmp_path / "target"
    if kind == "empty":
        path.mkdir()
    elif kind == "file":
        path.write_text("not a sweep")
    elif kind == "single run":
        finished_job(tmp_path, 0, ["seed=1"], 2)
        path = tmp_path / "0"
    result = summarize_cli(str(path))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("nip: error: ") and message in lines[0]
    assert result.stdout == ""


def test_real_sweep(tmp_path):
    """A tiny local multirun of two learning rates, summarised from the command line."""
    sweep = tmp_path / "sweep"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "nip.run",
            "-m",
            "trainer.num_iterations=2",
            *TINY_OVERRIDES,
            f"cache_dir={tmp_path / 'cache'}",
            "seed=1",
            "trainer.lr=1e-3,1e-4",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    result = summarize_cli(str(sweep))
    assert result.returncode == 0, result.stderr
    header, rows = read_csv(sweep / "summary.csv")
    assert header[0] == "trainer.lr"
    assert [(r["trainer.lr"], r["finished"]) for r in rows] == [("0.001", "1"), ("0.0001", "1")]
    final = [json.loads(line) for line in (sweep / "0" / "metrics.jsonl").read_text().splitlines()]
    assert float(rows[0]["test_accuracy_mean"]) == pytest.approx(final[-1]["test_mean_accuracy"])
    assert (sweep / "learning_curves.png").read_bytes().startswith(PNG_SIGNATURE)

    # Hydra's real multirun.yaml gives a job that lost its files back its setting.
    for path in sorted((sweep / "1").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    assert summarize_cli(str(sweep)).returncode == 0
    _, rows = read_csv(sweep / "summary.csv")
    counts = [(r["trainer.lr"], r["finished"], r["failed"]) for r in rows]
    assert counts == [("0.001", "1", "0"), ("0.0001", "0", "1")]


@pytest.mark.parametrize("case", ["no argument", "output is a file"])
def test_bad_arguments_are_one_line(tmp_path, case):
    if case == "no argument":
        args, message = [], "the following arguments are required: SWEEP_DIR"
    else:
        finished_job(tmp_path / "sweep", 0, ["seed=1"], 2)
        (tmp_path / "taken").write_text("")
        args, message = [str(tmp_path / "sweep"), "--out", str(tmp_path / "taken")], "cannot"
    result = summarize_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nip: error: ") and message in lines[0]


def test_solo_agent_jobs_are_summarised_per_agent(tmp_path):
    """Solo runs count epochs and report each agent's own test accuracy."""
    sweep = tmp_path / "sweep"
    for num, (prover, verifier) in enumerate([(0.8, 0.5), (0.6, 0.7)]):
        epochs = [{"iteration": i, "epoch": i, "prover.accuracy": 0.5} for i in range(3)]
        final = {
            "iteration": 3,
            "test_num_examples": 10.0,
            "test_isomorphic_fraction": 0.4,
            "prover.test_accuracy": prover,
            "verifier.test_accuracy": verifier,
        }
        write_job(
            sweep,
            num,
            [f"seed={num}"],
            num_iterations=3,
            train=epochs,
            tests=[final],
            checkpoint=(3, True),
            trainer={"name": "solo_agent", "num_epochs": 3},
        )
    summary = summarize(sweep)
    assert [job.status for job in summary.jobs] == ["finished", "finished"]
    (setting,) = summary.settings  # seeds of one setting
    stats = setting.stats
    assert stats["prover.test_accuracy"][0] == pytest.approx(0.7)
    assert stats["prover.test_accuracy"][1] == pytest.approx(0.1414, abs=1e-4)
    assert stats["verifier.test_accuracy"][0] == pytest.approx(0.6)
    assert stats["chance_accuracy"][0] == pytest.approx(0.6)
    assert (sweep / "summary.csv").is_file() and not (sweep / "learning_curves.png").exists()
