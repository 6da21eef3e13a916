"""SIGKILL mid-run from the command line, then the same command again: every trainer, the
solo agents and the image scenario resume to exactly the metrics of an uninterrupted run, and
their checkpoints are read by ``nip.evaluate`` (and, for images, ``nip.visualise``/``nip.probe``)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import RUNTIME_OVERRIDES
from tests.test_cli import ROOT, metrics, nip, tiny


def kill_after_lines(args: list[str], run_dir: Path, lines: int) -> None:
    """Start ``nip.run args`` and SIGKILL it once its metrics file has ``lines`` lines."""
    process = subprocess.Popen(
        [sys.executable, "-m", "nip.run", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while time.time() < deadline:
        path = run_dir / "metrics.jsonl"
        if path.exists() and len(path.read_text().splitlines()) >= lines:
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


@pytest.mark.parametrize(
    "trainer",
    [
        [],
        ["loss=kl_penalty"],
        ["trainer=reinforce"],
        ["trainer=reinforce", "trainer.use_advantage_and_critic=true"],
        ["schedule=alternating"],
        ["trainer=spg"],
    ],
    ids=["ppo", "ppo_kl_penalty", "reinforce", "reinforce_critic", "alternating", "spg_psos"],
)
def test_sigkill_then_resume_matches_uninterrupted(tmp_path, trainer):
    """Every trainer (and objective, and update schedule) resumes exactly after SIGKILL."""
    cache = tmp_path / "cache"
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    args = ["checkpoint.interval=1", *trainer]
    assert nip("nip.run", *tiny(straight, cache, 5), *args).returncode == 0
    kill_after_lines([*tiny(killed, cache, 5), *args], killed, 3)
    assert len((killed / "metrics.jsonl").read_text().splitlines()) < 6
    result = nip("nip.run", *tiny(killed, cache, 5), *args)
    assert result.returncode == 0, result.stderr
    assert metrics(killed) == metrics(straight)
    # nip.evaluate reads every trainer's checkpoints.
    from nip.scenarios.graph_iso.dataset import save_pairs_file
    from tests.helpers import random_pairs

    save_pairs_file(random_pairs(20, 8, seed=4), tmp_path / "pairs.pt")
    result = nip("nip.evaluate", f"checkpoint={killed}", f"dataset.path={tmp_path / 'pairs.pt'}")
    assert result.returncode == 0, result.stderr


def test_solo_agent_sigkill_then_resume_and_evaluate(tmp_path):
    """trainer=solo_agent from the command line: killed, resumed exactly, evaluated."""
    cache = tmp_path / "cache"
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    args = [
        "trainer=solo_agent",
        "trainer.num_epochs=6",
        "trainer.batch_size=4",  # slow enough epochs to be killed in the middle
        "scenario.num_train_pairs=200",
        "scenario.num_test_pairs=50",
        *RUNTIME_OVERRIDES,
        f"cache_dir={cache}",
    ]
    result = nip("nip.run", *args, f"hydra.run.dir={straight}")
    assert result.returncode == 0, result.stderr
    assert "solo test accuracy: prover" in result.stdout
    kill_after_lines([*args, f"hydra.run.dir={killed}"], killed, 2)
    assert len((killed / "metrics.jsonl").read_text().splitlines()) < 7
    result = nip("nip.run", *args, f"hydra.run.dir={killed}")
    assert result.returncode == 0, result.stderr
    assert metrics(killed) == metrics(straight)

    final = metrics(killed)[-1]
    # nip.evaluate on the run's own test split reproduces the run's final test figures.
    result = nip("nip.evaluate", f"checkpoint={killed}", "dataset.split=test")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for agent in ("prover", "verifier"):
        assert report[f"{agent}.accuracy"] == final[f"{agent}.test_accuracy"]
        assert report[f"{agent}.loss"] == pytest.approx(final[f"{agent}.test_loss"], rel=1e-5)
    # Settings of other trainers are unknown keys for it.
    result = nip("nip.run", *args, "trainer.num_iterations=3", f"hydra.run.dir={killed}")
    assert result.returncode == 2 and "num_iterations" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_image_classification_sigkill_resume_evaluate_and_data_errors(tmp_path):
    """scenario=image_classification from the command line: offline digits, killed and
    resumed exactly, evaluated on its test split; bad data in one line."""
    cache = tmp_path / "cache"
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    args = [
        "scenario=image_classification",
        "scenario.max_train_size=300",
        "trainer.num_iterations=5",
        "trainer.frames_per_batch=64",
        "trainer.minibatch_size=32",
        "trainer.num_epochs=2",
        "trainer.num_normalization_frames=64",
        "checkpoint.interval=1",
        *RUNTIME_OVERRIDES,
        f"cache_dir={cache}",
    ]
    result = nip("nip.run", *args, f"hydra.run.dir={straight}")
    assert result.returncode == 0, result.stderr
    kill_after_lines([*args, f"hydra.run.dir={killed}"], killed, 3)
    assert len((killed / "metrics.jsonl").read_text().splitlines()) < 6
    result = nip("nip.run", *args, f"hydra.run.dir={killed}")
    assert result.returncode == 0, result.stderr
    assert metrics(killed) == metrics(straight)
    result = nip("nip.evaluate", f"checkpoint={killed}", "dataset.split=test", "seed=1")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["chance_accuracy"] == 0.5 and "accuracy_class_7" in report
    # Its episodes drawn: the image once per round that carried a message.
    result = nip("nip.visualise", f"checkpoint={killed}", "num_episodes=2")
    assert result.returncode == 0, result.stderr
    rows = json.loads((killed / "visualisations" / "episodes.json").read_text())["episodes"]
    assert [r["datapoint_id"] for r in rows] == [0, 1]
    assert all(r["strata"]["class"] in range(10) for r in rows)
    assert rows[0]["transcript"][0].startswith("round 0: verifier -> (")
    # ... and probed: the label and the image's class.
    result = nip("nip.probe", f"checkpoint={killed}", "num_passes=1")
    assert result.returncode == 0, result.stderr
    probes = json.loads((killed / "probe_split_test.json").read_text())["probes"]
    assert {r["target"] for r in probes} == {"label", "class"}
    assert next(r for r in probes if r["target"] == "class")["num_classes"] == 10

    # Files in the data directory that are not what they claim: one line, nothing written.
    bad = tmp_path / "data" / "mnist"
    bad.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (bad / name).write_bytes(b"not an idx file")
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (bad / name).write_bytes(b"not an idx file")
    for extra, message in (
        (["scenario.dataset=mnist", f"scenario.data_dir={tmp_path / 'data'}"], "idx file"),
        (["scenario.dataset=imagenet"], "unknown scenario.dataset 'imagenet'"),
    ):
        result = nip("nip.run", *args, *extra, f"hydra.run.dir={tmp_path / 'bad'}")
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "bad" / "metrics.jsonl").exists()
