"""W&B-backed trainer methods, exercised with wandb in offline mode (no network)."""

import os

import pytest
import wandb

import nip.factory
from nip.experiment_settings import ExperimentSettings
from nip.factory import build_scenario_instance, build_trainer
from tests.helpers import random_pairs, tiny_hyper_params


@pytest.fixture
def offline_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run = wandb.init(project="nip-tests", dir=tmp_path, id="offlinetest")
    yield run
    run.finish()


def test_checkpoint_logged_as_wandb_artifact(tmp_path, offline_run, monkeypatch):
    monkeypatch.setattr(
        nip.factory, "build_datasets", lambda p, c: (random_pairs(60, 6), random_pairs(20, 6, 1))
    )
    hp = tiny_hyper_params(tmp_path / "cache")
    settings = ExperimentSettings(
        run_dir=tmp_path / "run",
        progress_bar=False,
        cache_dir=tmp_path / "cache",
        wandb_run=offline_run,
    )
    trainer = build_trainer(hp, build_scenario_instance(hp, settings), settings)
    trainer.save_checkpoint(log=True)
    offline_run.finish()
    run_dirs = [d for d in (tmp_path / "wandb").iterdir() if d.name.startswith("offline-run")]
    assert len(run_dirs) == 1
    logs = b"".join(p.read_bytes() for p in run_dirs[0].glob("*.wandb"))
    assert b"checkpoint_run" in logs  # the artifact name: checkpoint_<run id>
    assert b"state.pt" in logs
    assert (
        os.environ.get("WANDB_API_KEY") is None or os.environ["WANDB_API_KEY"].encode() not in logs
    )
