"""Benchmark graph-isomorphism dataset generation and batched WL scoring (not a test).

Usage::

    python benchmarks/data_generation.py --num-pairs 10000

Generates the pairs with the default ``GraphIsoScenarioConfig`` (no cache) and prints the
total time and pairs per second, then the throughput of ``wl_scores`` on random ER pairs of
the default configurations and of ``wl_signatures`` on single graphs.
"""

import argparse
import os
import time

import torch

from nip.scenarios.graph_iso.config import GraphIsoScenarioConfig
from nip.scenarios.graph_iso.generation import generate_pairs, sample_erdos_renyi
from nip.scenarios.graph_iso.wl import wl_scores, wl_signatures


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def random_pairs(params: GraphIsoScenarioConfig, num_pairs: int, seed: int):
    """Independent ER pairs spread over the configurations, padded to the largest size."""
    generator = torch.Generator().manual_seed(seed)
    max_nodes = max(params.graph_sizes)
    configs = [(n, p) for n in params.graph_sizes for p in params.edge_probabilities]
    adjacency, masks = [], []
    for index, (n, p) in enumerate(configs):
        count = num_pairs // len(configs) + (index < num_pairs % len(configs))
        graphs = sample_erdos_renyi(2 * count, n, p, generator)
        extra = max_nodes - n
        adjacency.append(
            torch.nn.functional.pad(graphs, (0, extra, 0, extra)).view(
                count, 2, max_nodes, max_nodes
            )
        )
        masks.append((torch.arange(max_nodes) < n).expand(count, 2, max_nodes))
    return torch.cat(adjacency), torch.cat(masks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-pairs", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=available_cores())
    parser.add_argument("--repeats", type=int, default=1, help="generation runs (best is shown)")
    parser.add_argument("--wl-pairs", type=int, default=200000)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    params = GraphIsoScenarioConfig()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    times = []
    for repeat in range(args.repeats):
        start = time.perf_counter()
        dataset = generate_pairs(params, args.num_pairs, seed=args.seed + repeat)
        times.append(time.perf_counter() - start)
    best = min(times)
    scores, counts = dataset.wl_score.unique(return_counts=True)
    print(
        f"generation: {args.num_pairs} pairs in {best:.2f} s ({args.num_pairs / best:.0f} pairs/s)"
        + (f"; all runs {', '.join(f'{t:.2f}' for t in times)} s" if args.repeats > 1 else "")
    )
    print("  wl_score counts:", dict(zip(scores.tolist(), counts.tolist(), strict=True)))

    adjacency, mask = random_pairs(params, args.wl_pairs, args.seed)
    start = time.perf_counter()
    scores = wl_scores(
        adjacency[:, 0], adjacency[:, 1], mask[:, 0], mask[:, 1], params.wl_iterations
    )
    elapsed = time.perf_counter() - start
    print(
        f"wl_scores: {args.wl_pairs} random pairs in {elapsed:.2f} s "
        f"({args.wl_pairs / elapsed:.0f} pairs/s, {params.wl_iterations} iterations max; "
        f"{float((scores == 1).float().mean()):.1%} separated after one)"
    )
    graphs, graph_mask = adjacency.flatten(0, 1), mask.flatten(0, 1)
    start = time.perf_counter()
    wl_signatures(graphs, graph_mask, params.wl_iterations)
    elapsed = time.perf_counter() - start
    print(
        f"wl_signatures: {graphs.shape[0]} graphs x {params.wl_iterations} iterations in "
        f"{elapsed:.2f} s ({graphs.shape[0] / elapsed:.0f} graphs/s)"
    )


if __name__ == "__main__":
    main()
