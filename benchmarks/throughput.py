"""End-to-end training throughput on the paper's GI config (a benchmark, not a test).

Runs ``python -m nip.run`` twice with the paper config (2048 frames per iteration, 10 epochs,
minibatch 256, prover 5 / verifier 2 GNN layers) on 2,000 training pairs, for a short and a
longer number of iterations, and reports (extra frames) / (extra wall time), so start-up,
dataset and test costs cancel. Also prints the mean per-iteration split into collection,
advantage estimation and update from the longer run's ``metrics.jsonl``.

Usage::

    python benchmarks/throughput.py [--short 3] [--long 8] [--threads N] [-- extra overrides]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE = ["scenario.num_train_pairs=2000", "scenario.num_test_pairs=100", "logger.progress_bar=false"]


def timed_run(iterations: int, run_dir: Path, cache: Path, threads: int | None, extra: list[str]):
    args = [*BASE, f"trainer.num_iterations={iterations}", f"hydra.run.dir={run_dir}"]
    args += [f"cache_dir={cache}", *extra]
    if threads:
        args.append(f"device.num_threads={threads}")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nip.run", *args], cwd=ROOT, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=3)
    parser.add_argument("--long", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"
        # Warm the dataset cache so that neither timed run generates data.
        timed_run(1, tmp / "warm", cache, args.threads, args.overrides)
        short = timed_run(args.short, tmp / "short", cache, args.threads, args.overrides)
        long = timed_run(args.long, tmp / "long", cache, args.threads, args.overrides)
        rows = [json.loads(x) for x in (tmp / "long" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "time_iteration_s" in r]
    frames_per_batch = train[1]["frames"] - train[0]["frames"]
    extra_frames = (args.long - args.short) * frames_per_batch
    fps = extra_frames / (long - short)
    print(f"machine: {os.cpu_count()} cores; threads={args.threads or 'torch default'}")
    print(f"runs: {args.short} iterations {short:.1f} s, {args.long} iterations {long:.1f} s")
    print(
        f"end-to-end training throughput: {fps:.0f} frames/s ({(long - short) / (args.long - args.short):.2f} s/iteration)"
    )
    for key in ("time_collect_s", "time_advantage_s", "time_update_s", "time_iteration_s"):
        values = [r[key] for r in train[1:]]  # the first iteration includes warm-up
        print(f"  {key[5:-2]:>10}: {statistics.mean(values):.3f} s per iteration")


if __name__ == "__main__":
    main()
