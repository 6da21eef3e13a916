"""Dataset generation: quotas, labels, isomorphism, padding and determinism."""

import math
from collections import Counter
from dataclasses import replace

import networkx as nx
import pytest
import torch

from nip.errors import NipConfigError
from nip.scenarios.graph_iso import generation
from nip.scenarios.graph_iso.config import GraphIsoScenarioConfig
from nip.scenarios.graph_iso.generation import generate_pairs, sample_erdos_renyi
from nip.scenarios.graph_iso.wl import wl_signatures

SMALL = GraphIsoScenarioConfig(
    graph_sizes=[7, 8], edge_probabilities=[0.3, 0.5], wl_iterations=5, num_train_pairs=200
)


def exact_wl_score(adjacency_a, adjacency_b, num_iterations):
    """1-WL with exact colours shared by both (unpadded) graphs."""
    neighbours = [
        [row.nonzero().flatten().tolist() for row in a] for a in (adjacency_a, adjacency_b)
    ]
    colours = [[0] * len(neighbours[0]), [0] * len(neighbours[1])]
    for iteration in range(1, num_iterations + 1):
        keys = [
            [(c[i], tuple(sorted(c[j] for j in nbrs[i]))) for i in range(len(c))]
            for c, nbrs in zip(colours, neighbours, strict=True)
        ]
        table = {key: index for index, key in enumerate(sorted(set(keys[0] + keys[1])))}
        colours = [[table[key] for key in graph_keys] for graph_keys in keys]
        if Counter(colours[0]) != Counter(colours[1]):
            return iteration
    return -1


def expected_counts(params, num_pairs):
    """The original code's floor formulas, written out independently."""
    configs = len(params.graph_sizes) * len(params.edge_probabilities)
    per = num_pairs * params.prop_non_isomorphic / configs
    q1 = math.floor(per * params.non_iso_prop_score_1)
    q2 = math.floor(per * params.non_iso_prop_score_2)
    q3 = math.floor(per) - q1 - q2
    from_non_iso = math.floor(
        num_pairs * (1 - params.prop_non_isomorphic) * params.iso_prop_from_non_iso
    )
    return q1, q2, q3, from_non_iso, num_pairs - configs * (q1 + q2 + q3) - from_non_iso


@pytest.fixture(scope="module")
def small_dataset():
    return generate_pairs(SMALL, 200, seed=123)


def test_quotas_follow_the_floor_formulas(small_dataset):
    q1, q2, q3, from_non_iso, fresh = expected_counts(SMALL, 200)
    assert (q1, q2, q3) == (2, 5, 18)
    score, size = small_dataset.wl_score, small_dataset.sizes[:, 0]
    assert len(small_dataset) == 200
    assert int((score == -1).sum()) == from_non_iso + fresh == 100
    for n in SMALL.graph_sizes:
        of_size = size == n
        # Two edge probabilities per size.
        assert int((of_size & (score == 1)).sum()) == 2 * q1
        assert int((of_size & (score == 2)).sum()) == 2 * q2
        assert int((of_size & (score > 2)).sum()) == 2 * q3
    # Fresh isomorphic graphs: 12 per configuration, the last one (size 8) taking 14; copies
    # of non-isomorphic members come from either size.
    assert int(((size == 7) & (score == -1)).sum()) >= 24
    assert int(((size == 8) & (score == -1)).sum()) >= 26


@pytest.mark.parametrize("num_pairs", [101, 37])
def test_quotas_with_uneven_counts(num_pairs):
    params = replace(SMALL, prop_non_isomorphic=0.6, iso_prop_from_non_iso=0.3)
    q1, q2, q3, from_non_iso, fresh = expected_counts(params, num_pairs)
    dataset = generate_pairs(params, num_pairs, seed=5)
    score = dataset.wl_score
    assert len(dataset) == num_pairs
    assert int((score == 1).sum()) == 4 * q1
    assert int((score == 2).sum()) == 4 * q2
    assert int((score > 2).sum()) == 4 * q3
    assert int((score == -1).sum()) == from_non_iso + fresh


def test_stored_scores_are_exact_wl_scores(small_dataset):
    non_iso = (small_dataset.wl_score != -1).nonzero().flatten()
    for i in non_iso.tolist():
        n = int(small_dataset.sizes[i, 0])
        a = small_dataset.adjacency[i, 0, :n, :n]
        b = small_dataset.adjacency[i, 1, :n, :n]
        assert exact_wl_score(a, b, SMALL.wl_iterations) == int(small_dataset.wl_score[i])


def to_networkx(adjacency):
    graph = nx.from_numpy_array(adjacency.int().numpy())
    return graph


def test_isomorphic_pairs_are_isomorphic_and_permuted(small_dataset):
    iso = (small_dataset.wl_score == -1).nonzero().flatten().tolist()
    identical = 0
    for i in iso:
        n = int(small_dataset.sizes[i, 0])
        a = small_dataset.adjacency[i, 0, :n, :n]
        b = small_dataset.adjacency[i, 1, :n, :n]
        assert nx.is_isomorphic(to_networkx(a), to_networkx(b))
        identical += bool(torch.equal(a, b))
    # Independent random relabellings rarely coincide (empty/complete graphs aside).
    assert identical < len(iso) // 4
    for i in (small_dataset.wl_score != -1).nonzero().flatten().tolist()[:30]:
        n = int(small_dataset.sizes[i, 0])
        a, b = small_dataset.adjacency[i, :, :n, :n]
        assert not nx.is_isomorphic(to_networkx(a), to_networkx(b))


def test_copied_isomorphic_pairs_come_from_non_isomorphic_members(small_dataset):
    _, _, _, from_non_iso, _ = expected_counts(SMALL, 200)
    mask = small_dataset.node_mask
    signatures = wl_signatures(small_dataset.adjacency.flatten(0, 1), mask.flatten(0, 1), 5).view(
        -1, 2, 5
    )
    non_iso = small_dataset.wl_score != -1
    member_signatures = {tuple(s) for s in signatures[non_iso].flatten(0, 1).tolist()}
    iso_signatures = signatures[~non_iso, 0].tolist()
    matches = sum(tuple(s) in member_signatures for s in iso_signatures)
    assert matches >= from_non_iso


def test_structure_padding_and_shuffling(small_dataset):
    adjacency, mask = small_dataset.adjacency, small_dataset.node_mask
    assert adjacency.shape == (200, 2, 8, 8) and adjacency.dtype == torch.bool
    assert small_dataset.max_nodes == 8
    assert torch.equal(adjacency, adjacency.transpose(-1, -2))
    assert not adjacency.diagonal(dim1=-2, dim2=-1).any()
    sizes = small_dataset.sizes
    assert torch.equal(sizes[:, 0], sizes[:, 1])
    assert set(sizes.flatten().tolist()) == {7, 8}
    assert torch.equal(mask, torch.arange(8) < sizes[..., None])
    assert not (adjacency & ~(mask[..., :, None] & mask[..., None, :])).any()
    # Non-isomorphic and isomorphic pairs are interleaved, not in blocks.
    y = small_dataset.y
    assert 20 < int(y[:100].sum()) < 80


def test_edge_density_matches_the_edge_probability():
    params = replace(SMALL, graph_sizes=[9], edge_probabilities=[0.25])
    dataset = generate_pairs(params, 120, seed=9)
    density = dataset.adjacency.float().sum() / (len(dataset) * 2 * 9 * 8)
    assert abs(float(density) - 0.25) < 0.03
    graphs = sample_erdos_renyi(4000, 6, 0.7, torch.Generator().manual_seed(0))
    assert torch.equal(graphs, graphs.mT) and not graphs.diagonal(dim1=1, dim2=2).any()
    assert abs(float(graphs.float().sum() / (4000 * 30)) - 0.7) < 0.01


def test_deterministic_for_a_seed_and_different_across_seeds(small_dataset):
    again = generate_pairs(SMALL, 200, seed=123)
    assert torch.equal(again.adjacency, small_dataset.adjacency)
    assert torch.equal(again.node_mask, small_dataset.node_mask)
    assert torch.equal(again.wl_score, small_dataset.wl_score)
    other = generate_pairs(SMALL, 200, seed=124)
    assert not torch.equal(other.adjacency, small_dataset.adjacency)


def test_only_isomorphic_pairs():
    params = replace(SMALL, prop_non_isomorphic=0.0)
    dataset = generate_pairs(params, 30, seed=0)
    assert len(dataset) == 30 and (dataset.wl_score == -1).all()


def test_empty_dataset():
    dataset = generate_pairs(SMALL, 0, seed=0)
    assert len(dataset) == 0 and dataset.max_nodes == 8


@pytest.mark.parametrize(
    "changes",
    [
        {"wl_iterations": 2},  # scores above 2 are asked for
        {"wl_iterations": 1, "non_iso_prop_score_1": 0.5, "non_iso_prop_score_2": 0.5},
        {"non_iso_prop_score_1": 0.7, "non_iso_prop_score_2": 0.4},
        {"prop_non_isomorphic": 1.5},
        {"graph_sizes": []},
        {"graph_sizes": [0, 7]},
        {"edge_probabilities": [1.2]},
    ],
)
def test_invalid_parameters_raise_config_errors(changes):
    with pytest.raises(NipConfigError) as error:
        generate_pairs(replace(SMALL, **changes), 100, seed=0)
    assert "\n" not in str(error.value)


def test_impossible_quota_raises_instead_of_looping(monkeypatch):
    # With edge probability 0 every graph is empty: no pair is non-isomorphic.
    monkeypatch.setattr(generation, "_MAX_POOL_SIZE", 4096)
    with pytest.raises(NipConfigError, match="WL score 1") as error:
        generate_pairs(replace(SMALL, edge_probabilities=[0.0]), 40, seed=0)
    assert "\n" not in str(error.value)


def test_pool_matching_keeps_every_qualifying_pair_equally_often():
    # Groups (grouping key) of sizes 2, 5, 4 and 3 with these separating keys; a pair
    # qualifies iff it shares the group and differs in the separating key.
    group = torch.tensor([0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3])
    separate = torch.tensor([0, 1, 0, 0, 0, 1, 2, 0, 0, 1, 1, 5, 5, 5])
    qualifying = {
        (i, j)
        for i in range(14)
        for j in range(i + 1, 14)
        if group[i] == group[j] and separate[i] != separate[j]
    }
    assert len(qualifying) == 1 + 7 + 4
    generator = torch.Generator().manual_seed(0)
    counts = Counter()
    trials = 2000
    for _ in range(trials):
        first, second, expected = generation._match_qualifying_pairs(group, separate, generator)
        used = torch.cat([first, second])
        assert used.unique().numel() == used.numel()  # disjoint pairs
        counts.update(
            tuple(sorted(pair)) for pair in zip(first.tolist(), second.tolist(), strict=True)
        )
    assert expected == pytest.approx(12 / 5)  # largest compensation factor: 5 (size 5)
    assert set(counts) == qualifying
    # Each qualifying pair is kept with probability 1/5: 400 +- 18 times.
    assert all(320 < count < 480 for count in counts.values()), counts
