"""Shared fixtures."""

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def cache_dir(tmp_path_factory) -> Path:
    """A dataset cache shared by the tests of one session."""
    return tmp_path_factory.getbasetemp() / "dataset_cache"
