"""How much could training N seeds as one batched computation gain? An upper bound, measured.

A benchmark, not a test. Folding N independent replicas of an experiment into one process
turns each of their matrix products into one N times larger (stacked parameters and
``vmap``, or a leading replica dimension). Whatever the implementation, the batched run
cannot beat one run whose batches are N times larger: same number of steps and operator
calls, N times the rows in each, with none of the per-replica bookkeeping. This benchmark
measures that bound on the paper's GI NIP PPO config (2,000 training pairs) with the real
trainer, through ``python -m nip.run``:

* ``T_1``: seconds per iteration of the paper config (2048 frames per iteration, minibatch
  256, 10 epochs);
* ``T_N``: the same with ``trainer.frames_per_batch=2048*N`` and
  ``trainer.minibatch_size=256*N`` (so ``N`` times as many environments and the same number
  of minibatch steps);
* the **headroom** ``N * T_1 / T_N``: the total frames/s of perfectly batched N seeds over N
  single-seed runs one after the other. A batched implementation is worth building where
  this is well above 1; the target of seed batching (N=4 at least twice the frames/s of
  four sequential runs) needs a headroom of at least 2.

Seconds per iteration are the trainer's own ``time_iteration_s`` (collection, advantage
estimation and update; no start-up, dataset or test), averaged over ``--iterations`` iterations
after the first (warm-up); the peak memory is that run's. Each phase (collection, advantage estimation, update) gets its own headroom, as
batching may pay in one and not in another. With a GPU present (``torch.cuda``), every row
is repeated with ``device=cuda``, where small networks are bound by kernel launches rather
than arithmetic and the bound is expected to be far higher.

Usage::

    python benchmarks/seed_batching.py [--seeds 1 2 4 8] [--iterations 4] [--threads N]
        [-- extra overrides]
"""

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from throughput import PHASES, cli_run

FRAMES, MINIBATCH = 2048, 256
ITERATION = "time_iteration_s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 4, 8])
    parser.add_argument("--iterations", type=int, default=4, help="timed, after a warm-up one")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()
    if args.iterations < 1 or 1 not in args.seeds:
        sys.exit("seed_batching: error: needs --iterations >= 1 and N=1 among --seeds")
    threads = args.threads or torch.get_num_threads()
    common = [f"device.num_threads={threads}", "protocol=nip", *args.overrides]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, {threads} threads")
    if "cuda" in devices:
        print(f"GPU: {torch.cuda.get_device_name()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"
        cli_run(1, tmp / "warm", cache, ["device=cpu", *common])  # datasets into the cache
        for device in devices:
            single = None
            for n in sorted(args.seeds):
                overrides = [
                    f"device={device}",
                    f"trainer.frames_per_batch={FRAMES * n}",
                    f"trainer.minibatch_size={MINIBATCH * n}",
                    *common,
                ]
                _, metrics, peak_mb = cli_run(
                    args.iterations + 1, tmp / f"{device}_{n}", cache, overrides
                )
                timed = metrics[1:]  # the first iteration includes warm-up
                result = {k: statistics.mean(r[k] for r in timed) for k in (*PHASES, ITERATION)}
                if n == 1:
                    single = result
                ratio = {k: n * single[k] / result[k] if result[k] > 0 else 0.0 for k in result}
                rows.append((device, n, result, ratio, peak_mb))
                print(
                    f"{device} N={n}: {result[ITERATION]:.2f} s/iteration, "
                    f"headroom {ratio[ITERATION]:.2f}x",
                    flush=True,
                )
    header = (
        "device",
        "N",
        "s/iteration",
        "frames/s per seed",
        "headroom (all)",
        "collect",
        "advantage",
        "update",
        "peak RSS",
    )
    table = [
        (
            device,
            str(n),
            f"{r[ITERATION]:.2f}",
            f"{FRAMES / r[ITERATION]:.0f}",
            f"{ratio[ITERATION]:.2f}x",
            *(f"{ratio[k]:.2f}x" for k in PHASES),
            f"{peak / 1024:.2f} GB",
        )
        for device, n, r, ratio, peak in rows
    ]
    print()
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    if "cuda" not in devices:
        print("no GPU on this machine: the device=cuda rows were not measured")


if __name__ == "__main__":
    main()
