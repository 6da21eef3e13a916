"""Per-protocol training throughput and memory on the paper config (a benchmark, not a test).

For each protocol (and its zero-knowledge variant), runs ``python -m nip.run`` for a few
paper-config iterations (2048 frames, 10 epochs, minibatch 256) on 2,000 training pairs and
prints the mean frames/s of the iterations after the first, the resident memory after the
first and the last iteration (flat memory: the two agree), and the peak resident memory.

Usage::

    python benchmarks/protocols.py [--iterations 4] [--protocols nip debate] [--no-zk]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALL = ["nip", "adp", "debate", "mnip", "merlin_arthur", "solo_verifier"]


def run(protocol: str, zero_knowledge: bool, iterations: int, tmp: Path) -> dict:
    run_dir = tmp / f"{protocol}_{int(zero_knowledge)}"
    args = [
        f"protocol={protocol}",
        f"protocol.zero_knowledge={str(zero_knowledge).lower()}",
        f"trainer.num_iterations={iterations}",
        "scenario.num_train_pairs=2000",
        "scenario.num_test_pairs=100",
        "logger.progress_bar=false",
        f"cache_dir={tmp / 'cache'}",
        f"hydra.run.dir={run_dir}",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "nip.run", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # wait4 reports this child's own peak resident memory.
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise subprocess.CalledProcessError(os.waitstatus_to_exitcode(status), process.args)
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "frames_per_s" in r]
    later = train[1:] or train
    return {
        "frames_per_s": sum(r["frames_per_s"] for r in later) / len(later),
        "rss_first_mb": train[0]["sys_rss_mb"],
        "rss_last_mb": train[-1]["sys_rss_mb"],
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--protocols", nargs="*", default=ALL)
    parser.add_argument("--no-zk", action="store_true")
    args = parser.parse_args()
    print(f"{'protocol':<22}{'frames/s':>10}{'RSS it.1 MB':>13}{'RSS last MB':>13}{'peak MB':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for protocol in args.protocols:
            for zk in (False,) if args.no_zk else (False, True):
                r = run(protocol, zk, args.iterations, Path(tmp))
                name = f"{protocol}{' +zk' if zk else ''}"
                print(
                    f"{name:<22}{r['frames_per_s']:>10.0f}{r['rss_first_mb']:>13.0f}"
                    f"{r['rss_last_mb']:>13.0f}{r['peak_rss_mb']:>10.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
