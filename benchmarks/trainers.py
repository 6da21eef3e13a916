"""Training throughput of every trainer and objective, as ratios to clipped PPO.

A benchmark, not a test. Each row runs the paper's GI NIP config (2048 frames per
iteration, 10 epochs of minibatch 256; 2,000 training pairs) through ``python -m nip.run``
for ``--short`` and ``--long`` iterations, and reports (extra frames) / (extra wall time), so
start-up, dataset and test costs cancel, with the iteration's split into collection,
advantage estimation and update. All rows are measured in the same run, on the same
machine, with the same thread count.

The supervised ``trainer=solo_agent`` plays no episodes, so it has no frames/s: its row
gives the training examples per second of an epoch (paper networks, batch 256, both agents
trained; 1,600 of the 2,000 pairs, the rest held out), the median over ``--solo-epochs``
epochs, the first left out as warm-up.

Usage::

    python benchmarks/trainers.py [--short 2] [--long 6] [--threads N] [-- extra overrides]
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from throughput import BASE, ROOT, cli_run, training_throughput

TRAINERS = {
    "ppo (clip)": [],
    "ppo (kl_penalty)": ["loss=kl_penalty"],
    "reinforce": ["trainer=reinforce", "trainer.num_epochs=10"],
    "reinforce + critic": [
        "trainer=reinforce",
        "trainer.num_epochs=10",
        "trainer.use_advantage_and_critic=true",
    ],
    "spg (pspg)": ["trainer=spg", "trainer.variant=pspg"],
    "spg (psos)": ["trainer=spg", "trainer.variant=psos"],
    "alternating schedule": ["schedule=alternating"],
}


def solo_agent_epochs(epochs: int, run_dir: Path, cache: Path, common: list[str]) -> list[dict]:
    """Run ``trainer=solo_agent`` for ``epochs`` epochs; its per-epoch metrics lines."""
    args = [*BASE, "trainer=solo_agent", f"trainer.num_epochs={epochs}", *common]
    args += [f"hydra.run.dir={run_dir}", f"cache_dir={cache}"]
    subprocess.run(
        [sys.executable, "-m", "nip.run", *args], cwd=ROOT, stdout=subprocess.DEVNULL, check=True
    )
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "time_epoch_s" in r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=2)
    parser.add_argument("--long", type=int, default=6)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--only", nargs="*", default=None, help="rows to run (names above)")
    parser.add_argument("--solo-epochs", type=int, default=6)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()
    threads = args.threads or torch.get_num_threads()
    common = ["device=cpu", f"device.num_threads={threads}", *args.overrides]
    rows = {k: v for k, v in TRAINERS.items() if args.only is None or k in args.only}
    print(f"{threads} threads; iterations {args.short} vs {args.long}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"
        cli_run(1, tmp / "warm", cache, common)  # datasets into the cache
        for name, overrides in rows.items():
            results[name] = training_throughput(
                args.short, args.long, tmp, cache, [*overrides, *common]
            )
            r = results[name]
            print(f"  measured {name}: {r.frames_per_s:.0f} frames/s", flush=True)
        solo = []
        if args.only is None or "solo_agent" in args.only:
            solo = solo_agent_epochs(args.solo_epochs, tmp / "solo", cache, common)[1:]
    base = results.get("ppo (clip)")
    print()
    print("| trainer | frames/s | s/iteration | collect / advantage / update s | vs ppo (clip) |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        phases = " / ".join(f"{v:.2f}" for v in r.phases.values())
        ratio = f"{r.frames_per_s / base.frames_per_s:.2f}x" if base else "n/a"
        print(
            f"| {name} | {r.frames_per_s:.0f} | {r.seconds_per_iteration:.2f} | {phases} "
            f"| {ratio} |"
        )
    if solo:
        rate = statistics.median(r["examples_per_s"] for r in solo)
        epoch = statistics.median(r["time_epoch_s"] for r in solo)
        print()
        print("| trainer | examples/s | s/epoch (1,600 examples) |")
        print("|---|---|---|")
        print(f"| solo_agent | {rate:.0f} | {epoch:.2f} |")


if __name__ == "__main__":
    main()
