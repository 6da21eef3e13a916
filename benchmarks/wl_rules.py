"""How many generated pairs the original code's WL rule would score differently (not a test).

Usage::

    python benchmarks/wl_rules.py --num-pairs 10000 --seed 0

Generates pairs with the default ``GraphIsoScenarioConfig`` and re-scores every
non-isomorphic pair with the original research code's closed-neighbourhood refinement
(:func:`nip.scenarios.graph_iso.wl.closed_neighbourhood_scores`). Pairs are compared by
score class, the strata the generator fills: 1, 2, more than 2, and -1 (not distinguished
within ``wl_iterations`` iterations, which the original would label isomorphic).
"""

import argparse
from collections import Counter

from nip.scenarios.graph_iso.config import GraphIsoScenarioConfig
from nip.scenarios.graph_iso.generation import generate_pairs
from nip.scenarios.graph_iso.wl import closed_neighbourhood_scores, wl_scores


def score_class(score: int) -> str:
    return {-1: "-1", 1: "1", 2: "2"}.get(score, ">2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-pairs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    params = GraphIsoScenarioConfig()
    data = generate_pairs(params, args.num_pairs, seed=args.seed)
    non_iso = data.wl_score != -1
    a, b = data.adjacency[non_iso, 0], data.adjacency[non_iso, 1]
    mask_a, mask_b = data.node_mask[non_iso, 0], data.node_mask[non_iso, 1]
    ours = wl_scores(a, b, mask_a, mask_b, params.wl_iterations)
    closed = closed_neighbourhood_scores(a, b, mask_a, mask_b, params.wl_iterations)
    changes = Counter(
        (score_class(o), score_class(c))
        for o, c in zip(ours.tolist(), closed.tolist(), strict=True)
        if score_class(o) != score_class(c)
    )
    total = int(non_iso.sum())
    print(f"{args.num_pairs} pairs (seed {args.seed}), {total} non-isomorphic")
    print(f"stored scores equal to 1-WL: {bool((ours == data.wl_score[non_iso]).all())}")
    differ = sum(changes.values())
    print(
        f"different score class under the closed-neighbourhood rule: {differ} ({differ / total:.2%})"
    )
    for (mine, theirs), count in sorted(changes.items()):
        print(f"  1-WL class {mine} -> closed-neighbourhood class {theirs}: {count}")
    equal_low = bool(
        ((ours <= 2) == (closed <= 2)).all() and (ours[ours <= 2] == closed[ours <= 2]).all()
    )
    print(f"scores 1 and 2 identical under both rules: {equal_low}")


if __name__ == "__main__":
    main()
