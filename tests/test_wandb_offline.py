"""W&B-backed trainer methods, exercised with wandb in offline mode (no network)."""

import os

import pytest
import wandb

from nip.experiment_settings import ExperimentSettings
from nip.factory import build_scenario_instance, build_trainer
from tests.helpers import random_pairs, tiny_hyper_params, use_datasets


@pytest.fixture
def offline_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run = wandb.init(project="nip-tests", dir=tmp_path, id="offlinetest", mode="offline")
    yield run
    run.finish()


def trainer_with_run(tmp_path, run_dir_name, wandb_run):
    """A tiny trainer in ``tmp_path/run_dir_name`` attached to ``wandb_run``."""
    hp = tiny_hyper_params(tmp_path / "cache")
    settings = ExperimentSettings(
        run_dir=tmp_path / run_dir_name,
        progress_bar=False,
        cache_dir=tmp_path / "cache",
        wandb_run=wandb_run,
    )
    return build_trainer(hp, build_scenario_instance(hp, settings), settings)


def test_checkpoint_logged_as_wandb_artifact(tmp_path, offline_run, monkeypatch):
    use_datasets(monkeypatch, random_pairs(60, 6), random_pairs(20, 6, 1))
    trainer = trainer_with_run(tmp_path, "run", offline_run)
    trainer.save_checkpoint(log=True)
    offline_run.finish()
    run_dirs = [d for d in (tmp_path / "wandb").iterdir() if d.name.startswith("offline-run")]
    assert len(run_dirs) == 1
    logs = b"".join(p.read_bytes() for p in run_dirs[0].glob("*.wandb"))
    assert b"checkpoint_offlinetest" in logs  # the artifact name: checkpoint_<run id>
    assert b"state.pt" in logs
    assert (
        os.environ.get("WANDB_API_KEY") is None or os.environ["WANDB_API_KEY"].encode() not in logs
    )


def cli(*args, env_changes=None):
    import subprocess
    import sys

    from tests.test_cli import ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(env_changes or {})
    return subprocess.run(
        [sys.executable, "-m", "nip.run", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_offline_cli_run_logs_history_and_resumes_same_run_id(tmp_path):
    from tests.test_cli import tiny

    run_dir = tmp_path / "run"
    wandb_args = ["logger=wandb", "logger.mode=offline", "logger.project=nip-tests"]
    args = [a for a in tiny(run_dir, tmp_path / "cache", 1) if a != "logger.progress_bar=false"]
    secret = "nipsecretkey0123456789abcdef0123456789abcd"
    result = cli(*args, *wandb_args, env_changes={"WANDB_API_KEY": secret})
    assert result.returncode == 0, result.stderr
    # No credential reaches the run's logs, configs, metrics, checkpoints or W&B files.
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in result.stdout + result.stderr
    run_id = (run_dir / "wandb_run_id.txt").read_text().strip()
    first = [d for d in (run_dir / "wandb").iterdir() if d.name.startswith("offline-run")]
    assert len(first) == 1 and first[0].name.endswith(run_id)
    logs = b"".join(p.read_bytes() for p in first[0].glob("*.wandb"))
    assert b"mean_accuracy" in logs and b"test_mean_accuracy" in logs
    assert b"test_terminated_fraction" in logs and b"terminated_fraction" in logs
    assert b"rollout_samples" in logs  # the table of episodes logged at iteration 0
    # ... with a picture of each sampled episode (both graphs, the nodes pointed at).
    pictures = list(first[0].glob("files/media/images/rollout_samples_episode_*.png"))
    assert pictures and all(p.read_bytes().startswith(b"\x89PNG") for p in pictures)
    assert f"checkpoint_{run_id}".encode() in logs

    # More iterations in the same directory: the same W&B run continues.
    args = [a.replace("num_iterations=1", "num_iterations=2") for a in args]
    result = cli(*args, *wandb_args)
    assert result.returncode == 0, result.stderr
    assert (run_dir / "wandb_run_id.txt").read_text().strip() == run_id
    runs = [d for d in (run_dir / "wandb").iterdir() if d.name.startswith("offline-run")]
    assert len(runs) == 2 and all(d.name.endswith(run_id) for d in runs)


def offline_args(tmp_path, run_dir) -> list[str]:
    """One thread, a cache and run directory under ``tmp_path``, offline W&B."""
    return [
        "device=cpu",
        "device.num_threads=1",
        f"cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={run_dir}",
        "logger=wandb",
        "logger.mode=offline",
        "logger.project=nip-tests",
    ]


def offline_run_files(run_dir):
    """The run's single offline W&B directory and the bytes of its ``.wandb`` log."""
    (run,) = [d for d in (run_dir / "wandb").iterdir() if d.name.startswith("offline-run")]
    return run, b"".join(p.read_bytes() for p in run.glob("*.wandb"))


def test_offline_solo_agent_run_logs_epochs_test_and_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    args = [
        "trainer=solo_agent",
        "trainer.num_epochs=2",
        "scenario.num_train_pairs=200",
        "scenario.num_test_pairs=50",
    ]
    result = cli(*args, *offline_args(tmp_path, run_dir))
    assert result.returncode == 0, result.stderr
    run_id = (run_dir / "wandb_run_id.txt").read_text().strip()
    run, logs = offline_run_files(run_dir)
    for key in (b"verifier.heldout_accuracy", b"prover.accuracy", b"verifier.test_accuracy"):
        assert key in logs, key
    assert f"checkpoint_{run_id}".encode() in logs


def test_offline_image_classification_run_logs_images(tmp_path):
    run_dir = tmp_path / "run"
    args = [
        "scenario=image_classification",
        "scenario.max_train_size=200",
        "trainer.num_iterations=1",
        "trainer.frames_per_batch=64",
        "trainer.minibatch_size=32",
        "trainer.num_epochs=1",
        "trainer.num_normalization_frames=64",
    ]
    result = cli(*args, *offline_args(tmp_path, run_dir))
    assert result.returncode == 0, result.stderr
    run, logs = offline_run_files(run_dir)
    assert b"test_positive_fraction" in logs and b"test_accuracy_class_3" in logs
    assert b"rollout_samples" in logs
    # The table's images are written as media files of the run.
    assert list(run.rglob("media/images/*.png"))


def test_online_without_credentials_is_one_line(tmp_path):
    from tests.test_cli import tiny

    result = cli(
        *tiny(tmp_path / "run", tmp_path / "cache", 1),
        "logger=wandb",
        env_changes={"HOME": str(tmp_path), "NETRC": str(tmp_path / "none")},
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "W&B login" in lines[0], result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("source", ["none", "settings file", "identity token", "netrc"])
def test_login_check_accepts_what_wandb_accepts(tmp_path, source):
    """The online-mode login check is wandb's own lookup: credentials in wandb's settings
    file or an identity-token file count as a login, as a netrc entry does."""
    import subprocess
    import sys

    key = "k" * 40
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        HOME=str(tmp_path),
        NETRC=str(tmp_path / "netrc"),
        WANDB_CONFIG_DIR=str(tmp_path / "config"),
        WANDB_SILENT="true",
    )
    if source == "settings file":
        (tmp_path / "config").mkdir()
        (tmp_path / "config" / "settings").write_text(f"[default]\napi_key = {key}\n")
    elif source == "identity token":
        (tmp_path / "token").write_text("a-token\n")
        env["WANDB_IDENTITY_TOKEN_FILE"] = str(tmp_path / "token")
    elif source == "netrc":
        (tmp_path / "netrc").write_text(f"machine api.wandb.ai\n  login user\n  password {key}\n")
        (tmp_path / "netrc").chmod(0o600)
    check = "from nip.wandb_run import _has_credentials; print(_has_credentials())"
    result = subprocess.run(
        [sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(source != "none")


def test_resume_falls_back_to_checkpoint_artifact(tmp_path, monkeypatch):
    """Local files gone, W&B run resumed: the latest checkpoint artifact is used."""
    from nip.checkpointing import load_checkpoint_file
    from nip.run import run_experiment

    use_datasets(monkeypatch, random_pairs(60, 6), random_pairs(20, 6, 1))
    original = tmp_path / "original"
    run_experiment(
        tiny_hyper_params(tmp_path / "cache"),
        ExperimentSettings(run_dir=original, progress_bar=False, cache_dir=tmp_path / "cache"),
    )

    class Artifact:
        def download(self, root):
            return str(original / "checkpoints")

    class ResumedRun:
        id, resumed = "abc123", True
        requested = []

        def use_artifact(self, name):
            self.requested.append(name)
            return Artifact()

    run = ResumedRun()
    trainer = trainer_with_run(tmp_path, "new_node", run)
    assert run.requested == ["checkpoint_abc123:latest"]
    assert trainer.state.iteration == 2
    restored = load_checkpoint_file(tmp_path / "new_node" / "checkpoints" / "state.pt")
    assert restored["iteration"] == 2


def test_sweep_group_names():
    from pathlib import Path

    from nip.wandb_run import sweep_group

    assert sweep_group(Path("outputs/multirun/2026-12-01/10-00-00")) == "2026-12-01_10-00-00"
    assert sweep_group(Path("/scratch/my_ablation")) == "my_ablation"


def test_sweep_jobs_are_grouped_and_named_by_their_overrides(tmp_path):
    from tests.test_cli import tiny

    sweep_dir = tmp_path / "lr_sweep"
    args = [a for a in tiny(tmp_path / "unused", tmp_path / "cache", 1) if "hydra.run" not in a]
    wandb_args = ["logger=wandb", "logger.mode=offline", "logger.project=nip-tests"]
    result = cli("-m", *args, *wandb_args, "trainer.lr=0.001,0.002", f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, result.stderr
    for job, lr in ((0, "0.001"), (1, "0.002")):
        runs = [
            d
            for d in (sweep_dir / str(job) / "wandb").iterdir()
            if d.name.startswith("offline-run")
        ]
        logs = b"".join(p.read_bytes() for p in runs[0].glob("*.wandb"))
        # The name (the command line holds "trainer.lr=0.001,0.002", not job 1's name).
        assert f"trainer.lr={lr}".encode() in logs


def test_sweep_job_group_and_name_reach_wandb_init(tmp_path, monkeypatch):
    import dataclasses

    from nip.config.runtime import WandbLoggerConfig
    from nip.wandb_run import start_wandb_run

    captured = {}
    monkeypatch.setattr(wandb, "init", lambda **kwargs: captured.update(kwargs))
    hp = tiny_hyper_params(tmp_path / "cache")
    hp.logger = WandbLoggerConfig(mode="offline")
    sweep = tmp_path / "multirun" / "2026-12-01" / "10-00-00"
    start_wandb_run(hp, sweep / "3", sweep_dir=sweep, job_overrides=["seed=2", "trainer.lr=0.01"])
    assert captured["group"] == "2026-12-01_10-00-00"
    assert captured["name"] == "seed=2,trainer.lr=0.01"
    hp.logger = dataclasses.replace(hp.logger, group="mine")
    start_wandb_run(hp, sweep / "4", sweep_dir=sweep, job_overrides=["seed=3"])
    assert captured["group"] == "mine" and captured["name"] == "seed=3"
    start_wandb_run(hp, tmp_path / "single")
    assert captured["name"] == "single"
