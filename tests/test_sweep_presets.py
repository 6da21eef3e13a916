"""The sweep presets of multirun_sweeps/ and the launcher presets of conf/hydra/launcher/."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from nip.cli import CONFIG_DIR, SWEEPS_DIR, _sweep_variants
from nip.config import register_configs
from nip.config.launcher import DEFAULT_JOB_CPUS
from tests.test_cli import ROOT, metrics

PRESETS = sorted(p.stem for p in (SWEEPS_DIR / "sweep").glob("*.yaml"))


def _compose(overrides: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(
            "config",
            overrides=[*overrides, f"hydra.searchpath=[file://{SWEEPS_DIR}]"],
            return_hydra_config=True,
        )


def test_the_papers_presets_exist():
    expected = {
        "gi_protocols",
        "gi_zero_knowledge",
        "gi_verifier_size",
        "gi_random_prover",
        "smoke",
    }
    assert expected <= set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_value_of_every_preset_composes(preset):
    """Each job a preset would launch is a valid configuration (a bad value in a preset would
    otherwise only show when its job starts, perhaps hours into a sweep)."""
    params = yaml.safe_load((SWEEPS_DIR / "sweep" / f"{preset}.yaml").read_text())
    params = params["hydra"]["sweeper"]["params"]
    assert params, preset
    overrides = [f"{key}={value}" for key, value in params.items()]
    for variant in _sweep_variants(overrides):
        cfg = _compose([f"+sweep={preset}", *variant])
        assert cfg.hydra.mode.name == "MULTIRUN"
    if preset.startswith("gi_"):
        # Seeds from the paper's four.
        assert set(str(params["seed"]).split(",")) <= {"8144", "820", "4173", "3992"}


def test_gi_protocols_covers_every_protocol():
    params = yaml.safe_load((SWEEPS_DIR / "sweep" / "gi_protocols.yaml").read_text())
    protocols = set(params["hydra"]["sweeper"]["params"]["protocol"].split(","))
    shipped = {p.stem for p in (Path(CONFIG_DIR) / "protocol").glob("*.yaml")}
    assert protocols == shipped


@pytest.mark.parametrize("launcher", ["slurm", "local"])
def test_launcher_presets_size_jobs_from_the_device_settings(launcher):
    cfg = _compose([f"hydra/launcher={launcher}"])
    assert cfg.hydra.launcher.cpus_per_task == DEFAULT_JOB_CPUS
    assert cfg.hydra.launcher.gpus_per_node is None
    assert cfg.hydra.launcher.timeout_min >= 60
    cfg = _compose([f"hydra/launcher={launcher}", "device=cuda", "device.num_threads=6"])
    assert cfg.hydra.launcher.cpus_per_task == 6
    assert cfg.hydra.launcher.gpus_per_node == 1


def test_slurm_preset_requeues_timed_out_jobs_and_takes_site_settings():
    cfg = _compose(
        [
            "hydra/launcher=slurm",
            "hydra.launcher.partition=gpu",
            "hydra.launcher.account=lab",
            "hydra.launcher.qos=high",
        ]
    )
    launcher = cfg.hydra.launcher
    # A paper-length run (hours) outlives one job: enough requeues for five days in all.
    assert launcher.max_num_timeout * launcher.timeout_min >= 5 * 24 * 60
    assert (launcher.partition, launcher.account, launcher.qos) == ("gpu", "lab", "high")
    assert launcher.mem_gb > 0


def test_smoke_preset_runs_with_the_local_launcher(tmp_path):
    """Two jobs, each in its own process through submitit, both finish."""
    sweep = tmp_path / "sweep"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nip.run",
            "-m",
            "+sweep=smoke",
            "hydra/launcher=local",
            "device=cpu",
            f"cache_dir={tmp_path / 'cache'}",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for job in ("0", "1"):
        rows = metrics(sweep / job)
        assert rows[-1]["iteration"] == 3 and "test_mean_accuracy" in rows[-1]
    protocols = {
        yaml.safe_load((sweep / job / ".hydra" / "overrides.yaml").read_text())[0]
        for job in ("0", "1")
    }
    assert protocols == {"protocol=nip", "protocol=debate"}


def test_gi_random_prover_plays_a_random_prover():
    cfg = _compose(["+sweep=gi_random_prover"])
    assert cfg.scenario.prover.random and not cfg.scenario.verifier.random
