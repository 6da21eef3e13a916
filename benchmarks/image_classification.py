"""Training throughput of the image-classification scenario, as a ratio to GI's NIP run.

A benchmark, not a test. Rows, all measured in this run with the same thread count (frames/s
= extra frames over extra wall time between a ``--short`` and a ``--long`` run, so start-up,
data and test costs cancel; the phases are per iteration from the longer run's metrics):

* **GI NIP** (the paper's GI config; the baseline).
* **IC paper config**: ``cifar10`` with ``select_two`` classes 3 and 5, 256 frames per
  iteration, 10 epochs of minibatch 256 (the paper's ``ppo_ic`` settings), prover 4 conv
  blocks and a 3-layer decider, verifier 1 block; without the paper's pretrained ResNet
  embeddings for the prover (not supported). The CIFAR-10 files are read from
  ``--data-dir``; when they are not there (no network), a CIFAR-10 binary archive of the
  published layout and sizes with *random pixels* is written to a temporary directory:
  throughput does not depend on pixel values, and the table says which was used.
* **IC digits**: the default (offline) dataset at the same settings.

Usage::

    python benchmarks/image_classification.py [--short 3] [--long 8] [--threads N]
        [--data-dir DIR]
"""

import argparse
import io
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch
from throughput import training_throughput

IC_PAPER = [
    "trainer.frames_per_batch=256",
    "trainer.minibatch_size=256",
    "trainer.num_epochs=10",
    "scenario.prover.num_blocks_per_group=4",
    "scenario.prover.num_decider_layers=3",
    "scenario.verifier.num_blocks_per_group=1",
]
COMMON = ["logger.progress_bar=false", "trainer.test_interval=0"]


def write_synthetic_cifar10(directory: Path) -> None:
    """A CIFAR-10 binary archive with the published members and record counts, random pixels."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    def batch(n: int) -> bytes:
        labels = rng.integers(0, 10, n, dtype=np.uint8)[:, None]
        pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        return np.concatenate([labels, pixels], axis=1).tobytes()

    members = {f"cifar-10-batches-bin/data_batch_{i}.bin": batch(10000) for i in range(1, 6)}
    members["cifar-10-batches-bin/test_batch.bin"] = batch(10000)
    with tarfile.open(directory / "cifar-10-binary.tar.gz", "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=3)
    parser.add_argument("--long", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    threads = args.threads or torch.get_num_threads()
    device = ["device=cpu", f"device.num_threads={threads}"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"
        data_dir = args.data_dir
        pixels = "published"
        if data_dir is None or not (data_dir / "cifar10" / "cifar-10-binary.tar.gz").is_file():
            data_dir, pixels = tmp / "data", "synthetic (random pixels, published layout)"
            write_synthetic_cifar10(data_dir / "cifar10")
        rows = {
            "GI NIP (paper config, 2,000 pairs)": ([], None),
            "IC cifar10 select_two 3 vs 5 (paper config)": (
                [
                    "scenario.dataset=cifar10",
                    f"scenario.data_dir={data_dir}",
                    "scenario.binarification=select_two",
                    "scenario.selected_classes=[3,5]",
                    *IC_PAPER,
                ],
                ["scenario=image_classification"],
            ),
            "IC digits (same settings)": (IC_PAPER, ["scenario=image_classification"]),
        }
        print(f"{threads} threads; iterations {args.short} vs {args.long}; CIFAR-10: {pixels}")
        results = {}
        for name, (overrides, base) in rows.items():
            kwargs = {} if base is None else {"base": [*base, *COMMON]}
            results[name] = training_throughput(
                args.short, args.long, tmp, cache, [*overrides, *device], **kwargs
            )
            print(f"  measured {name}: {results[name].frames_per_s:.0f} frames/s", flush=True)
    base = next(iter(results.values()))
    print()
    print("| run | frames/s | s/iteration | collect / advantage / update s | vs GI NIP |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        phases = " / ".join(f"{v:.2f}" for v in r.phases.values())
        print(
            f"| {name} | {r.frames_per_s:.0f} | {r.seconds_per_iteration:.2f} | {phases} "
            f"| {r.frames_per_s / base.frames_per_s:.2f}x |"
        )


if __name__ == "__main__":
    main()
