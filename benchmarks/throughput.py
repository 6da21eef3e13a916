"""Performance table: training throughput, fraction of the machine limit, memory, data.

A benchmark, not a test. Every figure is measured here, in this run:

* **Training frames/s** (NIP and debate, paper config: 2048 frames per iteration, 10 epochs,
  minibatch 256, prover 5 / verifier 2 GNN layers, separate actor and critic bodies):
  ``python -m nip.run trainer=ppo scenario=graph_iso scenario.num_train_pairs=2000
  scenario.num_test_pairs=100`` is run for ``--short`` and ``--long`` iterations, and the
  throughput is (extra frames) / (extra wall time), so start-up, dataset and test costs
  cancel. The longer run's ``metrics.jsonl`` gives the split of an iteration into
  collection, advantage estimation and update.
* **Fraction of the limit**: FLOPs per trained frame, counted with
  ``torch.utils.flop_counter.FlopCounterMode`` over one real iteration (collection, GAE and
  all epochs of minibatch updates), times frames/s, divided by the float32 GEMM GFLOP/s
  measured on this machine (the best of the model's own GEMM shapes and a square GEMM).
* **Memory**: resident memory after iterations 5 and 20 of a 20-iteration NIP run (flat when
  they agree within 5%) and the run's peak.
* **Data**: generating 10,000 WL-stratified training pairs, uncached.
* **GPU**: the NIP row again with ``device=cuda`` when a GPU is present.

Usage::

    python benchmarks/throughput.py [--short 3] [--long 8] [--memory-iterations 20]
        [--threads N] [--protocols nip debate] [--skip-memory] [-- extra overrides]
"""

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
BASE = ["scenario.num_train_pairs=2000", "scenario.num_test_pairs=100", "logger.progress_bar=false"]
TARGET_FPS = {"nip": 1000, "debate": 600}
PHASES = ("time_collect_s", "time_advantage_s", "time_update_s")


@dataclass
class Throughput:
    frames_per_s: float
    seconds_per_iteration: float
    phases: dict[str, float]


# Linux counts the memory a child shares with its parent before ``exec`` in the child's peak
# (``ru_maxrss``); after in-process FLOP counting this process holds over 1 GB. Runs are
# therefore started by this small launcher, which reports its own child's peak.
_LAUNCHER = """\
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def cli_run(
    iterations: int, run_dir: Path, cache: Path, overrides: list[str], base: list[str] = BASE
) -> tuple[float, list[dict], float]:
    """Run ``python -m nip.run``.

    Returns
    -------
    wall : float
        Seconds from start to exit.
    rows : list of dict
        The run's per-iteration training metrics.
    peak_mb : float
        The run's peak resident memory.
    """
    args = [*base, f"trainer.num_iterations={iterations}", f"hydra.run.dir={run_dir}"]
    args += [f"cache_dir={cache}", *overrides]
    command = [sys.executable, "-c", _LAUNCHER, sys.executable, "-m", "nip.run", *args]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=True)
    wall = time.perf_counter() - start
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    peak_mb = int(done.stdout.split()[-1]) / 1024
    return wall, [r for r in rows if "time_iteration_s" in r], peak_mb


def training_throughput(
    short: int, long: int, tmp: Path, cache: Path, overrides: list[str], base: list[str] = BASE
) -> Throughput:
    """Frames/s as extra frames over extra wall time between a short and a long run
    (``base``: the overrides every run starts from; default: GI with 2,000 pairs)."""
    # A short, distinct directory name per setting (long override lists exceed name limits).
    tag = hashlib.sha256(" ".join([*base, *overrides]).encode()).hexdigest()[:16]
    short_s, _, _ = cli_run(short, tmp / f"{tag}_short", cache, overrides, base)
    long_s, rows, _ = cli_run(long, tmp / f"{tag}_long", cache, overrides, base)
    frames_per_batch = rows[1]["frames"] - rows[0]["frames"]
    extra = long - short
    later = rows[1:]  # the first iteration includes warm-up
    return Throughput(
        frames_per_s=extra * frames_per_batch / (long_s - short_s),
        seconds_per_iteration=(long_s - short_s) / extra,
        phases={k: statistics.mean(r[k] for r in later) for k in PHASES},
    )


def flops_per_frame(cache: Path, run_dir: Path, overrides: list[str]) -> float:
    """FLOPs of one real training iteration (after one warm-up iteration) per frame."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from torch.utils.flop_counter import FlopCounterMode

    from nip.cli import CONFIG_DIR
    from nip.config import register_configs, validate_hyper_params
    from nip.experiment_settings import ExperimentSettings
    from nip.factory import build_scenario_instance, build_trainer

    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[*BASE, f"cache_dir={cache}", *overrides])
    hp = OmegaConf.to_object(cfg)
    validate_hyper_params(hp)
    settings = ExperimentSettings(run_dir=run_dir, progress_bar=False, cache_dir=cache)
    trainer = build_trainer(hp, build_scenario_instance(hp, settings), settings)
    collector, _ = trainer._get_data_collectors()
    try:
        iterator = iter(collector)
        trainer._run_iteration(iterator)
        counter = FlopCounterMode(display=False)
        with counter:
            trainer._run_iteration(iterator)
    finally:
        collector.shutdown()
    return counter.get_total_flops() / hp.trainer.frames_per_batch


def _gemm_gflops(m: int, k: int, n: int, device: str = "cpu") -> float:
    """Best-of-five float32 ``[m, k] @ [k, n]`` GFLOP/s after a warm-up (TF32 off on GPUs)."""
    a, b = torch.randn(m, k, device=device), torch.randn(k, n, device=device)
    out = torch.empty(m, n, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    reps = max(3, int(2e9 / (2 * m * k * n)))
    for _ in range(3):  # warm-up: caches, kernel selection, clocks
        torch.mm(a, b, out=out)
    best = float("inf")
    for _ in range(5):
        sync()
        start = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b, out=out)
        sync()
        best = min(best, (time.perf_counter() - start) / reps)
    return 2 * m * k * n / best / 1e9


def gemm_gflops(threads: int) -> dict[str, float]:
    """CPU GEMM GFLOP/s on the model's shapes and on a square GEMM."""
    rows = 256 * 2 * 11  # minibatch x graphs x nodes: the GNN's row count
    shapes = {
        "model [5632x16]@[16x64]": (rows, 16, 64),
        "model [5632x64]@[64x16]": (rows, 64, 16),
        "model [64x5632]@[5632x16]": (64, rows, 16),
        "square 1024": (1024, 1024, 1024),
    }
    torch.set_num_threads(threads)
    return {name: _gemm_gflops(*shape) for name, shape in shapes.items()}


def memory_run(iterations: int, tmp: Path, cache: Path, overrides: list[str]) -> dict:
    """Resident memory after iteration 5 and the last one, and the peak, of one run."""
    _, rows, peak_mb = cli_run(iterations, tmp / "memory", cache, overrides)
    fifth = rows[min(4, len(rows) - 1)]["sys_rss_mb"]
    last = rows[-1]["sys_rss_mb"]
    return {
        "rss_5_mb": fifth,
        "rss_last_mb": last,
        "peak_mb": peak_mb,
        "growth": (last - fifth) / fifth,
    }


def data_generation_seconds(num_pairs: int) -> float:
    """Wall time to generate ``num_pairs`` WL-stratified pairs (default scenario, no cache)."""
    from nip.scenarios.graph_iso.config import GraphIsoScenarioConfig
    from nip.scenarios.graph_iso.generation import generate_pairs

    start = time.perf_counter()
    generate_pairs(GraphIsoScenarioConfig(), num_pairs, seed=0)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=3)
    parser.add_argument("--long", type=int, default=8)
    parser.add_argument("--memory-iterations", type=int, default=20)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--protocols", nargs="*", default=["nip", "debate"])
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--data-pairs", type=int, default=10000)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()
    threads = args.threads or torch.get_num_threads()
    common = [f"device.num_threads={threads}", *args.overrides]
    torch.set_num_threads(threads)

    gemm = gemm_gflops(threads)
    limit = max(gemm.values())
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, {threads} threads")
    for name, value in gemm.items():
        print(f"  float32 GEMM {name:<28} {value:7.1f} GFLOP/s")
    print(f"  limit used below: {limit:.1f} GFLOP/s (the best of these)", flush=True)
    limits = {"cpu": limit}
    if torch.cuda.is_available():
        limits["cuda"] = _gemm_gflops(4096, 4096, 4096, "cuda")
        print(f"  float32 GEMM on {torch.cuda.get_device_name()}: {limits['cuda']:.0f} GFLOP/s")

    table = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"
        cli_run(1, tmp / "warm", cache, ["device=cpu", *common])  # datasets into the cache
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        for protocol in args.protocols:
            overrides = [f"protocol={protocol}", *common]
            flops = flops_per_frame(cache, tmp / f"flops_{protocol}", ["device=cpu", *overrides])
            for device in devices:
                if device == "cuda" and protocol != "nip":
                    continue
                result = training_throughput(
                    args.short, args.long, tmp, cache, [f"device={device}", *overrides]
                )
                fraction = flops * result.frames_per_s / (limits[device] * 1e9)
                phases = ", ".join(f"{k[5:-2]} {v:.2f} s" for k, v in result.phases.items())
                print(
                    f"{protocol} ({device}): {result.frames_per_s:.0f} frames/s, "
                    f"{result.seconds_per_iteration:.2f} s/iteration ({phases}); "
                    f"{flops / 1e6:.1f} MFLOP/frame -> {flops * result.frames_per_s / 1e9:.1f} "
                    f"GFLOP/s = {fraction:.1%} of the limit",
                    flush=True,
                )
                target = TARGET_FPS.get(protocol)
                label = f"training frames/s, {protocol}" + (" (GPU)" if device == "cuda" else "")
                table.append(
                    (
                        label,
                        f"{result.frames_per_s:.0f} ({fraction:.1%} of limit)",
                        f">= {target}" if target and device == "cpu" else "reported",
                        "yes"
                        if not target or device == "cuda"
                        else _ok(result.frames_per_s >= target),
                    )
                )
        if not torch.cuda.is_available():
            table.append(
                ("training frames/s, nip (GPU)", "no GPU on this machine", "reported", "-")
            )
        if not args.skip_memory:
            mem = memory_run(
                args.memory_iterations, tmp, cache, ["device=cpu", "protocol=nip", *common]
            )
            n = args.memory_iterations
            table.append(
                (
                    f"peak RSS, {n}-iteration NIP run",
                    f"{mem['peak_mb'] / 1024:.2f} GB",
                    "< 1.5 GB",
                    _ok(mem["peak_mb"] < 1536),
                )
            )
            table.append(
                (
                    f"RSS iteration {n} vs 5",
                    f"{mem['rss_last_mb']:.0f} vs {mem['rss_5_mb']:.0f} MB ({mem['growth']:+.1%})",
                    "within 5%",
                    _ok(abs(mem["growth"]) <= 0.05),
                )
            )
    seconds = data_generation_seconds(args.data_pairs)
    table.append(
        (f"generating {args.data_pairs:,} pairs", f"{seconds:.1f} s", "< 30 s", _ok(seconds < 30))
    )

    print()
    widths = [max(len(str(row[i])) for row in [HEADER, *table]) for i in range(4)]
    for row in [HEADER, *table]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)))


HEADER = ("metric", "measured", "target", "met")


def _ok(condition: bool) -> str:
    return "yes" if condition else "NO"


if __name__ == "__main__":
    main()
