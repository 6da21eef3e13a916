"""The command line: a tiny end-to-end run, evaluation, bad input and local sweeps.

SIGKILL and resume from the command line are in ``tests/test_resume_cli.py``.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import TINY_DATA_OVERRIDES

ROOT = Path(__file__).resolve().parent.parent
TIME_PREFIXES = ("time_", "frames_per_s", "examples_per_s", "sys_")


def tiny(run_dir: Path, cache: Path, iterations: int = 2) -> list[str]:
    """Tiny run settings (few pairs, short iterations) with the paper's networks."""
    return [
        f"trainer.num_iterations={iterations}",
        *TINY_DATA_OVERRIDES,
        f"cache_dir={cache}",
        f"hydra.run.dir={run_dir}",
    ]


def nip(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith(TIME_PREFIXES)} for r in rows]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    run_dir = base / "run"
    result = nip("nip.run", *tiny(run_dir, base / "cache"))
    assert result.returncode == 0, result.stderr
    return run_dir, base / "cache"


def test_tiny_run_outputs(finished_run):
    run_dir, _ = finished_run
    rows = metrics(run_dir)
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    assert all("mean_accuracy" in r for r in rows[:2])
    assert "test_mean_accuracy" in rows[2]
    assert (run_dir / "checkpoints" / "state.pt").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "run.log").is_file()
    assert (run_dir / "training_curves.png").is_file()


def test_rerun_of_finished_run_changes_nothing(finished_run):
    run_dir, cache = finished_run
    before = (run_dir / "metrics.jsonl").read_text()
    result = nip("nip.run", *tiny(run_dir, cache))
    assert result.returncode == 0, result.stderr
    assert (run_dir / "metrics.jsonl").read_text() == before


def test_evaluate_original_format_file(finished_run, tmp_path):
    from nip.scenarios.graph_iso.dataset import save_original_format
    from nip.scenarios.graph_iso.generation import generate_pairs
    from tests.helpers import tiny_hyper_params

    params = tiny_hyper_params(tmp_path).scenario
    dataset = generate_pairs(params, 40, seed=5)
    path = tmp_path / "pairs.pt"
    save_original_format(dataset, path)
    run_dir, _ = finished_run
    result = nip("nip.evaluate", f"checkpoint={run_dir}", f"dataset.path={path}", "device=cpu")
    assert result.returncode == 0, result.stderr
    report = json.loads((run_dir / "checkpoints" / "evaluation_pairs.json").read_text())
    assert report["num_pairs"] == 40 and report["num_episodes"] == 40
    assert 0 <= report["mean_accuracy"] <= 1
    assert "accuracy_isomorphic" in report and "accuracy_non_isomorphic" in report
    assert any(k.startswith("accuracy_wl_score_") for k in report)
    assert "accuracy:" in result.stdout


def test_evaluate_samples_with_its_seed(finished_run, tmp_path):
    """The same seed gives the same figures, another seed others; greedy play is recorded
    and does not depend on the seed."""
    from nip.evaluate import DatasetArgs, EvaluateArgs, evaluate
    from nip.scenarios.graph_iso.dataset import save_pairs_file
    from tests.helpers import random_pairs

    path = tmp_path / "pairs.pt"
    save_pairs_file(random_pairs(60, 8, seed=4), path)
    run_dir, _ = finished_run

    def report(**changes):
        args = EvaluateArgs(
            checkpoint=str(run_dir),
            dataset=DatasetArgs(path=str(path)),
            device="cpu",
            output=str(tmp_path / "out.json"),
            **changes,
        )
        out = evaluate(args)
        return {k: v for k, v in out.items() if k not in ("output", "seed")}

    first = report(seed=1)
    assert first["greedy"] is False
    assert report(seed=1) == first
    assert report(seed=2) != first
    greedy = report(seed=1, greedy=True)
    assert greedy["greedy"] is True and report(seed=2, greedy=True) == greedy
    assert report(seed=1, num_passes=2)["num_episodes"] == 120


def test_print_composed_config():
    result = nip("nip.run", "--cfg", "job", "protocol.max_message_rounds=6")
    assert result.returncode == 0, result.stderr
    assert "max_message_rounds: 6" in result.stdout
    assert "num_train_pairs: 10000" in result.stdout


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.lr=abc"], "trainer.lr"),
        (["trainer.nonexistent_knob=1"], "nonexistent_knob"),
        (["protocol=nonexistent"], "protocol/nonexistent"),
        (["protocol.min_message_rounds=9", "protocol.max_message_rounds=8"], "min_message_rounds"),
        (["trainer.minibatch_size=128"], "minibatch_size"),
        (["scenario.dataset_path={missing}"], "no such file"),
        (["scenario.dataset_path={not_a_dataset}"], "not_a_dataset.txt"),
        (["hydra.run.dir=/tmp/rün"], "Hydra cannot read this value; quote it"),
        (["checkpoint.interval=0"], "checkpoint.interval must be >= 1"),
        (["trainer.lr=0.001"], "holds a checkpoint of a different experiment"),
        (["schedule=periodic", "schedule.period=0"], "schedule.period must be at least 1"),
        (["trainer=reinforce", "loss=clip"], "trainer=reinforce works with loss=reinforce"),
        (["loss=kl_penalty", "loss.kl_target=0"], "loss.kl_target must be positive"),
        # String choices are enums in the schema: a typo is refused with the allowed values.
        (
            ["device.type=cpux"],
            "device.type=cpux: Invalid value 'cpux', expected one of [auto, cpu, cuda]",
        ),
        (
            ["trainer=spg", "trainer.variant=nonsense"],
            "expected one of [spg, pspg, lola, pola, sos, psos]",
        ),
        (["loss.loss_critic_type=l3"], "expected one of [smooth_l1, l1, l2]"),
        (["scenario.verifier.activation=gelu"], "expected one of [tanh, relu, sigmoid]"),
        (
            ["scenario.prover.random=true", "scenario.verifier.frozen=true"],
            "no agent learns",
        ),
    ],
)
def test_bad_input_is_one_line(finished_run, tmp_path, overrides, message):
    run_dir, cache = finished_run
    not_a_dataset = tmp_path / "not_a_dataset.txt"
    not_a_dataset.write_text("these are not graphs\n")
    overrides = [
        o.format(missing=tmp_path / "missing.pt", not_a_dataset=not_a_dataset) for o in overrides
    ]
    before = files_of(run_dir)
    # Run in the finished run's directory: a failure must not touch its results.
    result = nip("nip.run", *tiny(run_dir, cache), *overrides)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("nip: error:") and message in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    # Every file of the run directory is as it was, .hydra/ and run.log included.
    assert files_of(run_dir) == before


def files_of(run_dir: Path) -> dict[str, bytes]:
    """Every file below ``run_dir`` but the lock (whose note names its latest holder)."""
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def test_sweep_preset_is_found():
    result = nip("nip.run", "+sweep=gi_seeds", "--cfg", "hydra")
    assert result.returncode == 0, result.stderr
    assert "seed: 8144,820,4173,3992" in result.stdout
    assert "mode: MULTIRUN" in result.stdout


def test_multirun_writes_one_run_per_job(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = [a for a in tiny(tmp_path / "unused", tmp_path / "cache", 1) if "hydra.run" not in a]
    result = nip("nip.run", "-m", *args, "seed=1,2", f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, result.stderr
    runs = [metrics(sweep_dir / str(i)) for i in range(2)]
    assert all(len(r) == 2 and "test_mean_accuracy" in r[-1] for r in runs)
    assert runs[0][0] != runs[1][0]  # different seeds, different runs


def test_failing_job_of_a_local_multirun_does_not_stop_the_others(tmp_path):
    """Job 0 is refused (checkpoint.interval=0); job 1 still runs; the sweep then exits 2
    with one line per failure and a summary."""
    sweep_dir = tmp_path / "sweep"
    args = [a for a in tiny(tmp_path / "unused", tmp_path / "cache", 1) if "hydra.run" not in a]
    result = nip("nip.run", "-m", *args, "checkpoint.interval=0,1", f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("nip: error:")]
    assert errors[0] == "nip: error: checkpoint.interval must be >= 1, got 0"
    assert errors[-1].startswith("nip: error: 1 job(s) of the sweep failed: 0 (")
    assert "Traceback" not in result.stderr
    assert "test_mean_accuracy" in metrics(sweep_dir / "1")[-1]


def test_sweep_preset_combines_with_comma_overrides(monkeypatch):
    """+sweep=NAME sets multirun mode itself; its pre-flight composes each swept value."""
    from nip.cli import preflight, with_sweeps_searchpath
    from nip.config import register_configs

    register_configs()
    preflight("config", with_sweeps_searchpath(["+sweep=gi_seeds", "trainer.lr=1e-4,3e-4"]))
    with pytest.raises(SystemExit) as exit_info:
        preflight("config", with_sweeps_searchpath(["+sweep=gi_seeds", "trainer.lr=1e-4,abc"]))
    assert exit_info.value.code == 2


def test_config_name_and_dir_flags_are_respected(tmp_path):
    """-cn / -cd: the pre-flight finds the user's primary config (which changes the seed)."""
    (tmp_path / "myconf.yaml").write_text((ROOT / "conf" / "config.yaml").read_text() + "seed: 5\n")
    result = nip("nip.run", "-cn", "myconf", "-cd", str(tmp_path), "--cfg", "job")
    assert result.returncode == 0, result.stderr
    assert "seed: 5" in result.stdout
    result = nip("nip.run", "-cn", "myconf", "-cd", str(tmp_path), "trainer.lr=abc")
    assert result.returncode == 2 and result.stderr.startswith("nip: error:")
