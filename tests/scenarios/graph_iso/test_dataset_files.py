"""Dataset files (ours and the original code's), the generation cache and build_datasets."""

import logging
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from nip.errors import NipDataError
from nip.scenarios.graph_iso import dataset as dataset_module
from nip.scenarios.graph_iso import generation
from nip.scenarios.graph_iso.config import GraphIsoScenarioConfig
from nip.scenarios.graph_iso.dataset import (
    GraphPairDataset,
    build_datasets,
    cache_key,
    load_or_generate,
    load_pairs_file,
    save_original_format,
    save_pairs_file,
)
from nip.utils.seeding import derive_seed

PARAMS = GraphIsoScenarioConfig(
    graph_sizes=[7, 8], edge_probabilities=[0.4], num_train_pairs=40, num_test_pairs=20
)


def two_way(edges):
    """Both directions of undirected edges, as an int64 [2, E] edge index."""
    directed = [(u, v) for u, v in edges] + [(v, u) for u, v in edges]
    return torch.tensor(directed, dtype=torch.long).reshape(-1, 2).T


def tiny_original():
    """Two pairs written by hand in the original format."""
    edges_a = [two_way([(0, 1), (1, 2), (2, 0)]), two_way([(0, 3)])]
    edges_b = [two_way([(0, 1), (1, 2)]), two_way([(0, 1)])]
    return {
        "edge_index_a": torch.cat(edges_a, dim=1),
        "edge_index_b": torch.cat(edges_b, dim=1),
        "slices_a": torch.tensor([0, 6, 8]),
        "slices_b": torch.tensor([0, 4, 6]),
        "sizes_a": torch.tensor([3, 4], dtype=torch.int32),
        "sizes_b": torch.tensor([3, 2], dtype=torch.int32),
        "wl_scores": torch.tensor([1, -1], dtype=torch.int32),
    }


def write(path, data):
    torch.save(data, path)
    return path


def assert_same(a: GraphPairDataset, b: GraphPairDataset):
    assert torch.equal(a.adjacency, b.adjacency)
    assert torch.equal(a.node_mask, b.node_mask)
    assert torch.equal(a.wl_score, b.wl_score)


@pytest.fixture(scope="module")
def generated():
    return generation.generate_pairs(PARAMS, 40, seed=7)


def test_hand_written_original_file_loads_to_the_right_adjacency(tmp_path):
    loaded = load_pairs_file(write(tmp_path / "tiny.pt", tiny_original()))
    expected = torch.zeros(2, 2, 4, 4, dtype=torch.bool)
    for pair, side, u, v in [
        (0, 0, 0, 1),
        (0, 0, 1, 2),
        (0, 0, 2, 0),
        (0, 1, 0, 1),
        (0, 1, 1, 2),
        (1, 0, 0, 3),
        (1, 1, 0, 1),
    ]:
        expected[pair, side, u, v] = expected[pair, side, v, u] = True
    assert torch.equal(loaded.adjacency, expected)
    assert loaded.max_nodes == 4 and len(loaded) == 2
    assert loaded.sizes.tolist() == [[3, 3], [4, 2]]
    assert loaded.node_mask[1].tolist() == [[True] * 4, [True, True, False, False]]
    assert loaded.wl_score.dtype == torch.long and loaded.wl_score.tolist() == [1, -1]
    assert loaded.y.tolist() == [0, 1]


def test_original_format_round_trip(tmp_path, generated):
    path = tmp_path / "original.pt"
    save_original_format(generated, path)
    raw = torch.load(path, weights_only=True)
    assert raw["edge_index_a"].dtype == torch.long and raw["slices_b"].dtype == torch.long
    assert raw["sizes_a"].dtype == torch.int32 and raw["wl_scores"].dtype == torch.int32
    # Both directions of every edge, cumulative counts per pair.
    assert raw["edge_index_a"].shape[1] == int(generated.adjacency[:, 0].sum())
    assert raw["slices_a"].diff().tolist() == generated.adjacency[:, 0].sum((1, 2)).tolist()
    assert_same(load_pairs_file(path), generated)
    assert sorted(os.listdir(tmp_path)) == ["original.pt"]  # no temporary files left


def test_hand_written_file_survives_a_round_trip_through_both_formats(tmp_path):
    tiny = load_pairs_file(write(tmp_path / "tiny.pt", tiny_original()))
    save_original_format(tiny, tmp_path / "again.pt")
    again = torch.load(tmp_path / "again.pt", weights_only=True)
    for key, value in tiny_original().items():
        if key.startswith("edge_index"):  # the writer orders edges by (source, target)
            order = lambda e: sorted(map(tuple, e.T.tolist()))  # noqa: E731
            assert order(again[key]) == order(value)
        else:
            assert torch.equal(again[key], value)
    save_pairs_file(tiny, tmp_path / "ours.pt")
    assert_same(load_pairs_file(tmp_path / "ours.pt"), tiny)


def test_our_format_round_trip(tmp_path, generated):
    path = tmp_path / "sub" / "ours.pt"
    save_pairs_file(generated, path)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "nip-graph-pairs" and raw["version"] == 1
    assert raw["adjacency"].dtype == torch.bool and raw["sizes"].shape == (40, 2)
    assert_same(load_pairs_file(path), generated)
    assert sorted(os.listdir(path.parent)) == ["ours.pt"]


def test_dataset_helpers(generated):
    assert len(generated) == 40 and generated.max_nodes == 8
    padded = generated.pad_to(11)
    assert padded.max_nodes == 11 and torch.equal(padded.sizes, generated.sizes)
    assert not padded.adjacency[..., 8:, :].any() and not padded.node_mask[..., 8:].any()
    assert_same(padded.pad_to(8), generated)
    with pytest.raises(ValueError):
        generated.pad_to(7)
    index = torch.tensor([3, 0, 3])
    subset = generated.subset(index)
    assert len(subset) == 3 and torch.equal(subset.adjacency[1], generated.adjacency[0])
    assert torch.equal(generated.subset(generated.y == 1).wl_score, torch.full((20,), -1))
    assert torch.equal(generated.y, (generated.wl_score == -1).long())


def original_with(**changes):
    data = tiny_original()
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    return data


def ours_with(**changes):
    data = {
        "format": "nip-graph-pairs",
        "version": 1,
        "adjacency": torch.zeros(1, 2, 3, 3, dtype=torch.bool),
        "sizes": torch.tensor([[3, 2]]),
        "wl_score": torch.tensor([-1]),
    }
    data["adjacency"][0, 0, 0, 1] = data["adjacency"][0, 0, 1, 0] = True
    data.update(changes)
    return data


def one_way_edge():
    adjacency = torch.zeros(1, 2, 3, 3, dtype=torch.bool)
    adjacency[0, 0, 0, 1] = True
    return adjacency


def edge_beyond_size():
    adjacency = torch.zeros(1, 2, 3, 3, dtype=torch.bool)
    adjacency[0, 1, 0, 2] = adjacency[0, 1, 2, 0] = True  # graph b has 2 nodes
    return adjacency


class Opaque:
    pass


BAD_FILES = {
    "garbage bytes": (b"definitely not a torch file", "not a readable torch file"),
    "not a dict": ([1, 2, 3], "expected a dict"),
    "pickled object": ({"x": Opaque()}, "not a readable torch file"),
    "no known keys": ({"x": torch.zeros(1)}, "not a graph-pair dataset"),
    "missing key": (original_with(slices_b=None), "missing keys ['slices_b']"),
    "float edges": (
        original_with(edge_index_a=tiny_original()["edge_index_a"].float()),
        "'edge_index_a' has dtype",
    ),
    "not a tensor": (original_with(sizes_a=[3, 4]), "'sizes_a' is a list"),
    "edge index shape": (
        original_with(edge_index_b=torch.zeros(3, 6, dtype=torch.long)),
        "expected [2, E]",
    ),
    "slices decreasing": (
        original_with(slices_a=torch.tensor([0, 6, 4])),
        "not non-decreasing",
    ),
    "slices not matching edges": (original_with(slices_a=torch.tensor([0, 6, 7])), "ends at 7"),
    "slices length": (original_with(slices_b=torch.tensor([0, 6])), "expected 3"),
    "slices start": (original_with(slices_b=torch.tensor([1, 4, 6])), "must start at 0"),
    "node id too large": (
        original_with(sizes_b=torch.tensor([3, 1], dtype=torch.int32)),
        "out of range for pair 1",
    ),
    "negative node id": (
        original_with(edge_index_b=-tiny_original()["edge_index_b"]),
        "out of range",
    ),
    "lengths disagree": (
        original_with(sizes_a=torch.tensor([3, 4, 5], dtype=torch.int32)),
        "'sizes_a' has 3 entries but 'wl_scores' has 2",
    ),
    "zero size": (original_with(sizes_a=torch.tensor([0, 4], dtype=torch.int32)), "positive"),
    "no pairs": (
        {
            "edge_index_a": torch.zeros(2, 0, dtype=torch.long),
            "edge_index_b": torch.zeros(2, 0, dtype=torch.long),
            "slices_a": torch.zeros(1, dtype=torch.long),
            "slices_b": torch.zeros(1, dtype=torch.long),
            "sizes_a": torch.zeros(0, dtype=torch.int32),
            "sizes_b": torch.zeros(0, dtype=torch.int32),
            "wl_scores": torch.zeros(0, dtype=torch.int32),
        },
        "holds no graph pairs",
    ),
    "huge graphs": (
        original_with(sizes_a=torch.tensor([3, 30000], dtype=torch.int32)),
        "has graphs of 30000 nodes; at most 256",
    ),
    "bad score": (original_with(wl_scores=torch.tensor([0, -1])), "-1 or positive"),
    "one-directional edges": (
        original_with(
            edge_index_a=torch.tensor([[0, 1, 2, 0], [1, 2, 0, 3]]),
            slices_a=torch.tensor([0, 3, 4]),
        ),
        "not symmetric",
    ),
    "self loop": (
        original_with(edge_index_b=torch.tensor([[0, 1, 1, 2, 0, 0], [1, 0, 2, 1, 0, 0]])),
        "self loop",
    ),
    "ours: unknown format": (ours_with(format="other"), "unknown format 'other'"),
    "ours: version": (ours_with(version=2), "unsupported nip-graph-pairs version 2"),
    "ours: missing key": ({"format": "nip-graph-pairs", "version": 1}, "missing keys"),
    "ours: adjacency dtype": (
        ours_with(adjacency=torch.zeros(1, 2, 3, 3)),
        "expected bool or uint8",
    ),
    "ours: adjacency shape": (
        ours_with(adjacency=torch.zeros(1, 3, 3, 3, dtype=torch.bool)),
        "expected [pairs, 2, N, N]",
    ),
    "ours: not 0/1": (
        ours_with(adjacency=torch.full((1, 2, 3, 3), 2, dtype=torch.uint8)),
        "only 0 and 1",
    ),
    "ours: not symmetric": (ours_with(adjacency=one_way_edge()), "not symmetric"),
    "ours: edge beyond size": (ours_with(adjacency=edge_beyond_size()), "beyond its graph"),
    "ours: size too large": (ours_with(sizes=torch.tensor([[3, 4]])), "between 1 and N = 3"),
    "ours: sizes shape": (ours_with(sizes=torch.tensor([3, 2])), "'sizes' has shape"),
    "ours: no pairs": (
        ours_with(
            adjacency=torch.zeros(0, 2, 3, 3, dtype=torch.bool),
            sizes=torch.zeros(0, 2, dtype=torch.long),
            wl_score=torch.zeros(0, dtype=torch.long),
        ),
        "holds no graph pairs",
    ),
    "ours: scores length": (ours_with(wl_score=torch.tensor([-1, 2])), "'wl_score' has 2"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_raise_one_line_data_errors(tmp_path, case):
    content, message = BAD_FILES[case]
    path = tmp_path / "bad.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(NipDataError) as error:
        load_pairs_file(path)
    text = str(error.value)
    assert "\n" not in text and str(path) in text
    assert message in text


def test_missing_file_and_directory(tmp_path):
    for path, message in [(tmp_path / "nope.pt", "no such file"), (tmp_path, "not a regular")]:
        with pytest.raises(NipDataError, match=message) as error:
            load_pairs_file(path)
        assert "\n" not in str(error.value)


def test_cache_is_reused(tmp_path, monkeypatch):
    first = load_or_generate(PARAMS, "train", 40, tmp_path)
    path = tmp_path / "graph_iso" / f"{cache_key(PARAMS, 'train', 40)}.pt"
    assert path.is_file()
    assert_same(first, generation.generate_pairs(PARAMS, 40, derive_seed(0, "graph_iso", "train")))

    def fail(*args, **kwargs):
        raise AssertionError("regenerated although cached")

    monkeypatch.setattr(generation, "generate_pairs", fail)
    mtime = path.stat().st_mtime_ns
    assert_same(load_or_generate(PARAMS, "train", 40, tmp_path), first)
    assert path.stat().st_mtime_ns == mtime


def test_cache_key_covers_every_generation_input():
    key = cache_key(PARAMS, "train", 40)
    assert cache_key(PARAMS, "train", 40) == key
    variants = [
        cache_key(PARAMS, "test", 40),
        cache_key(PARAMS, "train", 41),
        cache_key(replace(PARAMS, data_seed=1), "train", 40),
        cache_key(replace(PARAMS, graph_sizes=[7, 9]), "train", 40),
        cache_key(replace(PARAMS, edge_probabilities=[0.5]), "train", 40),
        cache_key(replace(PARAMS, wl_iterations=4), "train", 40),
        cache_key(replace(PARAMS, prop_non_isomorphic=0.4), "train", 40),
        cache_key(replace(PARAMS, non_iso_prop_score_1=0.2), "train", 40),
        cache_key(replace(PARAMS, non_iso_prop_score_2=0.1), "train", 40),
        cache_key(replace(PARAMS, iso_prop_from_non_iso=0.2), "train", 40),
    ]
    assert len(set(variants + [key])) == len(variants) + 1
    # Settings that do not affect the data (agent architecture) share the cache.
    assert cache_key(replace(PARAMS, d_representation=64), "train", 40) == key


def test_corrupt_cache_is_regenerated(tmp_path, caplog):
    path = tmp_path / "graph_iso" / f"{cache_key(PARAMS, 'test', 20)}.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00 truncated")
    with caplog.at_level(logging.WARNING, logger=dataset_module.__name__):
        dataset = load_or_generate(PARAMS, "test", 20, tmp_path)
    assert "Regenerating" in caplog.text
    assert len(dataset) == 20
    assert_same(load_pairs_file(path), dataset)


def test_build_datasets_reads_files_and_pads_splits_alike(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    write(tmp_path / "tiny.pt", tiny_original())
    params = replace(PARAMS, dataset_path="~/tiny.pt")
    train, test = build_datasets(params, tmp_path / "cache")
    assert len(train) == 2 and len(test) == 20
    assert train.max_nodes == test.max_nodes == 8
    assert train.sizes.tolist() == [[3, 3], [4, 2]]

    save_pairs_file(generation.generate_pairs(PARAMS, 10, seed=1), tmp_path / "test.pt")
    params = replace(PARAMS, test_dataset_path=str(Path("~") / "test.pt"))
    train, test = build_datasets(params, tmp_path / "cache")
    assert (len(train), len(test)) == (40, 10)

    with pytest.raises(NipDataError, match="no such file"):
        build_datasets(replace(PARAMS, dataset_path="~/missing.pt"), tmp_path / "cache")
