"""Image-classification datasets: a yes/no question from classes, balanced, cached.

A source's classes become binary labels (``binarification``), optionally balanced and
subsampled, all seeded by ``data_seed``; the processed splits are cached under
``<cache_dir>/image_classification/`` by a hash of exactly the settings that shape them.
"""

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from nip.checkpointing import atomic_torch_save
from nip.config.choices import check_choices
from nip.errors import NipConfigError, NipDataError
from nip.scenarios.image_classification.config import (
    Binarification,
    ImageClassificationScenarioConfig,
)
from nip.scenarios.image_classification.sources import SOURCES, RawSplit, ensure_files
from nip.utils.seeding import derive_seed

log = logging.getLogger("nip")

# Bumped when processing changes, so cache entries of an older procedure are not reused.
CACHE_FORMAT_VERSION = 1


@dataclass
class ImageDataset:
    """Images with a binary label each.

    Attributes
    ----------
    images : Tensor
        uint8 ``[N, C, H, W]``, as published (agents see them scaled to ``[-1, 1]``).
    y : Tensor
        long ``[N]``: the binary label.
    classes : Tensor
        long ``[N]``: the source's class of each image (for accuracy by class).
    """

    images: Tensor
    y: Tensor
    classes: Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise TypeError("images must be a uint8 tensor [N, C, H, W]")
        if self.y.shape != self.images.shape[:1] or self.classes.shape != self.y.shape:
            raise ValueError("y and classes must have one entry per image")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        return tuple(self.images.shape[1:])


def normalise_images(images: Tensor) -> Tensor:
    """uint8 images to float in ``[-1, 1]`` (scaled to ``[0, 1]``, then mean and std 0.5)."""
    return images.float() / 127.5 - 1.0


def _generator(data_seed: int, *names: object) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(data_seed, *names))


def selected_pair(params: ImageClassificationScenarioConfig) -> tuple[int, int]:
    """The two classes of ``select_two`` (default: classes 0 and 1)."""
    chosen = params.selected_classes if params.selected_classes is not None else [0, 1]
    return int(chosen[0]), int(chosen[1])


def binarify(split: RawSplit, params: ImageClassificationScenarioConfig, name: str) -> ImageDataset:
    """Binary labels for one split (``name``: ``train`` or ``test``), balanced if asked.

    ``merge``: a seeded permutation of the classes; the classes in its second half are
    label 1 (the same mapping for both splits). ``select_two``: only the two selected
    classes; label 1 is the second. ``random``: seeded random labels.
    """
    num_classes = SOURCES[params.dataset].num_classes
    images, classes = split.images, split.classes
    if params.binarification == Binarification.merge:
        order = torch.randperm(num_classes, generator=_generator(params.data_seed, "merge"))
        positive = order[num_classes // 2 :]
        y = torch.isin(classes, positive).long()
    elif params.binarification == Binarification.select_two:
        first, second = selected_pair(params)
        keep = (classes == first) | (classes == second)
        images, classes = images[keep], classes[keep]
        y = (classes == second).long()
    else:
        generator = _generator(params.data_seed, "random_labels", name)
        y = torch.randint(0, 2, classes.shape, generator=generator)
    keep = torch.arange(len(y))
    if params.make_balanced:
        keep = balanced_indices(y, _generator(params.data_seed, "balance", name))
    if name == "train" and params.max_train_size is not None and len(keep) > params.max_train_size:
        generator = _generator(params.data_seed, "max_train_size")
        chosen = torch.randperm(len(keep), generator=generator)[: params.max_train_size]
        keep = keep[chosen.sort().values]
    return ImageDataset(images[keep].contiguous(), y[keep], classes[keep])


def balanced_indices(y: Tensor, generator: torch.Generator) -> Tensor:
    """Indices (in order) keeping every minority example and as many of the majority,
    chosen at random."""
    positive = (y == 1).nonzero().squeeze(1)
    negative = (y == 0).nonzero().squeeze(1)
    count = min(len(positive), len(negative))
    kept = [
        group[torch.randperm(len(group), generator=generator)[:count]]
        for group in (positive, negative)
    ]
    return torch.cat(kept).sort().values


def cache_key(params: ImageClassificationScenarioConfig, split: str) -> str:
    """SHA-256 hex digest of exactly the settings that shape a processed split."""
    fields = {
        "cache_format_version": CACHE_FORMAT_VERSION,
        "dataset": params.dataset,
        "binarification": params.binarification,
        "selected_classes": list(selected_pair(params))
        if params.binarification == Binarification.select_two
        else None,
        "make_balanced": params.make_balanced,
        "max_train_size": params.max_train_size if split == "train" else None,
        "data_seed": params.data_seed,
        "split": split,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def check_dataset_settings(params: ImageClassificationScenarioConfig) -> None:
    """One-line refusals of dataset settings the schema's types cannot rule out.

    Raises
    ------
    NipConfigError
    """
    if params.dataset not in SOURCES:
        raise NipConfigError(
            f"unknown scenario.dataset {params.dataset!r}; known: {', '.join(SOURCES)}"
        )
    check_choices(params, "scenario.")  # the dataset may be built without the whole config
    num_classes = SOURCES[params.dataset].num_classes
    if params.selected_classes is not None:
        chosen = list(params.selected_classes)
        if len(chosen) != 2 or chosen[0] == chosen[1]:
            raise NipConfigError(
                f"scenario.selected_classes must name two different classes, got {chosen}"
            )
        if not all(0 <= c < num_classes for c in chosen):
            raise NipConfigError(
                f"scenario.selected_classes {chosen}: {params.dataset} has classes "
                f"0..{num_classes - 1}"
            )
    if params.max_train_size is not None and params.max_train_size < 1:
        raise NipConfigError(
            f"scenario.max_train_size must be at least 1, got {params.max_train_size}"
        )


def build_datasets(
    params: ImageClassificationScenarioConfig, cache_dir: str | Path, progress_bar: bool = True
) -> tuple[ImageDataset, ImageDataset]:
    """The processed train and test splits, from the cache or from the source's files.

    Raises
    ------
    NipConfigError
        For unknown datasets or binarifications and bad class choices.
    NipDataError
        For missing files that cannot be downloaded, unreadable files, or a split that
        ends up empty.
    """
    check_dataset_settings(params)
    paths = {
        split: Path(cache_dir).expanduser()
        / "image_classification"
        / f"{cache_key(params, split)}.pt"
        for split in ("train", "test")
    }
    cached = {split: _read_cache(path) for split, path in paths.items()}
    if all(d is not None for d in cached.values()):
        return cached["train"], cached["test"]
    source = SOURCES[params.dataset]
    directory = (
        ensure_files(params.dataset, Path(params.data_dir), progress_bar) if source.files else None
    )
    raw_train, raw_test = source.read(directory)
    for split, raw in (("train", raw_train), ("test", raw_test)):
        if tuple(raw.images.shape[1:]) != source.image_shape:
            raise NipDataError(
                f"scenario.dataset={params.dataset}: the {split} images are "
                f"{tuple(raw.images.shape[1:])}, expected {source.image_shape}"
            )
    out = {}
    for split, raw in (("train", raw_train), ("test", raw_test)):
        dataset = binarify(raw, params, split)
        if len(dataset) == 0:
            raise NipDataError(
                f"scenario.dataset={params.dataset} with binarification={params.binarification} "
                f"leaves no {split} examples"
            )
        atomic_torch_save(
            {"images": dataset.images, "y": dataset.y, "classes": dataset.classes}, paths[split]
        )
        out[split] = dataset
    return out["train"], out["test"]


def _read_cache(path: Path) -> ImageDataset | None:
    """A cached split, or ``None`` when absent or unreadable (it is then rebuilt)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        return ImageDataset(state["images"], state["y"], state["classes"])
    except Exception as e:  # a damaged entry is rebuilt, never trusted
        log.warning(f"rebuilding the unreadable dataset cache entry {path}: {e}")
        return None
