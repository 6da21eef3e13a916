"""Binarification, balancing, subsampling and the cache of processed splits."""

import dataclasses

import pytest
import torch

from nip.errors import NipConfigError, NipDataError
from nip.scenarios.image_classification import dataset as ic_dataset
from nip.scenarios.image_classification.config import ImageClassificationScenarioConfig
from nip.scenarios.image_classification.dataset import (
    balanced_indices,
    binarify,
    build_datasets,
    cache_key,
    check_dataset_settings,
    normalise_images,
)
from nip.scenarios.image_classification.sources import RawSplit
from tests.scenarios.image_classification.test_sources import write_idx_dataset


def raw(classes: list[int]) -> RawSplit:
    """Image i is all i (so kept images can be told apart)."""
    n = len(classes)
    images = torch.arange(n, dtype=torch.uint8)[:, None, None, None].expand(n, 1, 2, 2)
    return RawSplit(images.contiguous(), torch.tensor(classes))


def params(**kwargs) -> ImageClassificationScenarioConfig:
    return dataclasses.replace(ImageClassificationScenarioConfig(), **kwargs)


def test_merge_labels_half_the_classes_the_same_way_in_both_splits():
    p = params(binarification="merge", make_balanced=False)
    train = binarify(raw(list(range(10)) * 3), p, "train")
    test = binarify(raw(list(range(10))), p, "test")
    positive = sorted(train.classes[train.y == 1].unique().tolist())
    assert len(positive) == 5
    assert sorted(test.classes[test.y == 1].tolist()) == positive
    # A class's label never varies, and the data seed picks the half.
    for c in range(10):
        assert train.y[train.classes == c].unique().numel() == 1

    def positive_classes(seed: int) -> tuple[int, ...]:
        d = binarify(raw(list(range(10))), params(make_balanced=False, data_seed=seed), "train")
        return tuple(sorted(d.classes[d.y == 1].tolist()))

    halves = {positive_classes(seed) for seed in range(6)}
    assert len(halves) > 1


def test_select_two_keeps_two_classes_and_labels_the_second():
    p = params(binarification="select_two", selected_classes=[3, 5], make_balanced=False)
    d = binarify(raw([3, 1, 5, 5, 0, 3, 5]), p, "train")
    assert d.classes.tolist() == [3, 5, 5, 3, 5]
    assert d.y.tolist() == [0, 1, 1, 0, 1]
    assert d.images[:, 0, 0, 0].tolist() == [0, 2, 3, 5, 6]  # the original images, in order


def test_random_labels_are_seeded_per_split():
    p = params(binarification="random", make_balanced=False)
    a = binarify(raw([0] * 200), p, "train").y
    assert torch.equal(a, binarify(raw([0] * 200), p, "train").y)
    assert not torch.equal(a, binarify(raw([0] * 200), p, "test").y)
    assert 60 < a.sum() < 140


def test_balancing_keeps_every_minority_example_and_as_many_others():
    y = torch.tensor([1, 0, 0, 0, 1, 0, 0])
    kept = balanced_indices(y, torch.Generator().manual_seed(0))
    assert kept.tolist() == sorted(kept.tolist())
    assert {0, 4} <= set(kept.tolist()) and len(kept) == 4
    assert y[kept].sum() == 2
    p = params(binarification="select_two", selected_classes=[0, 1])
    d = binarify(raw([0, 0, 0, 1, 0, 1]), p, "train")
    assert d.y.sum() == 2 and len(d) == 4


def test_max_train_size_subsamples_training_data_only():
    p = params(binarification="random", make_balanced=False, max_train_size=7)
    assert len(binarify(raw([0] * 50), p, "train")) == 7
    assert len(binarify(raw([0] * 50), p, "test")) == 50


def test_images_are_scaled_to_minus_one_one():
    images = torch.tensor([0, 255, 51], dtype=torch.uint8)[None, None, None]
    assert normalise_images(images).flatten().tolist() == pytest.approx([-1.0, 1.0, -0.6])


def test_digits_are_built_offline_and_cached(tmp_path, monkeypatch):
    p = params()  # digits, merge, balanced
    train, test = build_datasets(p, tmp_path / "cache", progress_bar=False)
    assert train.image_shape == (1, 8, 8) and len(train) > 1000 and len(test) > 250
    assert train.y.sum() * 2 == len(train) and test.y.sum() * 2 == len(test)
    assert len(list((tmp_path / "cache" / "image_classification").glob("*.pt"))) == 2

    def no_source(directory=None):
        raise AssertionError("the cache should have been used")

    monkeypatch.setitem(
        ic_dataset.SOURCES,
        "digits",
        dataclasses.replace(ic_dataset.SOURCES["digits"], read=no_source),
    )
    again, _ = build_datasets(p, tmp_path / "cache", progress_bar=False)
    assert torch.equal(again.images, train.images) and torch.equal(again.y, train.y)
    # A damaged entry is rebuilt, not trusted.
    path = tmp_path / "cache" / "image_classification" / f"{cache_key(p, 'train')}.pt"
    path.write_bytes(b"damaged")
    with pytest.raises(AssertionError, match="the cache should have been used"):
        build_datasets(p, tmp_path / "cache", progress_bar=False)


def test_cache_key_follows_exactly_the_settings_that_shape_the_data():
    base = params()
    assert cache_key(base, "train") != cache_key(base, "test")
    assert cache_key(base, "train") != cache_key(params(data_seed=1), "train")
    assert cache_key(base, "train") != cache_key(params(make_balanced=False), "train")
    # Settings that do not shape the data (the agents, the data directory) do not count.
    assert cache_key(base, "train") == cache_key(params(num_block_groups=2, data_dir="/x"), "train")
    # max_train_size shapes the training split only; selected_classes only select_two.
    assert cache_key(base, "test") == cache_key(params(max_train_size=5), "test")
    assert cache_key(base, "train") == cache_key(params(selected_classes=[2, 3]), "train")


def test_idx_dataset_from_the_data_directory(tmp_path):
    write_idx_dataset(tmp_path / "data" / "mnist", train_n=20, test_n=10)
    p = params(
        dataset="mnist",
        data_dir=str(tmp_path / "data"),
        binarification="select_two",
        selected_classes=[0, 3],
        make_balanced=False,
    )
    train, test = build_datasets(p, tmp_path / "cache", progress_bar=False)
    # Labels cycle 0, 3, 6, 9, 2, 5, 8, 1, 4, 7: classes 0 and 3 are 2 each of every 10.
    assert train.classes.tolist() == [0, 3, 0, 3] and train.y.tolist() == [0, 1, 0, 1]
    assert train.image_shape == (1, 28, 28) and len(test) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dataset": "imagenet"}, "unknown scenario.dataset 'imagenet'; known: digits, mnist"),
        ({"binarification": "halves"}, "scenario.binarification must be one of merge"),
        ({"selected_classes": [3, 3]}, "must name two different classes"),
        ({"selected_classes": [1, 2, 3]}, "must name two different classes"),
        ({"selected_classes": [0, 10]}, "digits has classes 0..9"),
        ({"max_train_size": 0}, "scenario.max_train_size must be at least 1"),
    ],
)
def test_bad_dataset_settings_are_one_line(kwargs, message):
    with pytest.raises(NipConfigError, match=message):
        check_dataset_settings(params(**kwargs))


def test_a_selection_that_leaves_nothing_is_a_data_error(tmp_path):
    write_idx_dataset(tmp_path / "data" / "mnist", train_n=3, test_n=3)  # classes 0, 3, 6
    p = params(
        dataset="mnist",
        data_dir=str(tmp_path / "data"),
        binarification="select_two",
        selected_classes=[1, 2],
    )
    with pytest.raises(NipDataError, match="leaves no train examples"):
        build_datasets(p, tmp_path / "cache", progress_bar=False)
