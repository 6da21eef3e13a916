"""Rollout statistics helpers: values, and the device they are computed on."""

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.symbolic_shapes import ShapeEnv

from nip.stats import _grouped_mean, _mean_std


def test_grouped_mean_per_group():
    values = torch.tensor([1.0, 2.0, 3.0, 5.0, 4.0])
    groups = torch.tensor([7, 2, 7, 2, 9])
    assert torch.equal(_grouped_mean(values, groups), torch.tensor([3.5, 2.0, 4.0]).double())


def test_grouped_mean_stays_on_the_inputs_device():
    """With CUDA training the accumulators must be created on the GPU, not the CPU.

    Fake tensors carry a CUDA device without a GPU; mixing devices raises as on a real one.
    """
    with FakeTensorMode(shape_env=ShapeEnv()):
        values = torch.ones(6, dtype=torch.float64, device="cuda:0")
        groups = torch.zeros(6, dtype=torch.long, device="cuda:0")
        assert _grouped_mean(values, groups).device == torch.device("cuda:0")


def test_mean_std_of_one_and_none():
    assert _mean_std(torch.tensor([3.0])) == (3.0, 0.0)
    mean, std = _mean_std(torch.tensor([]))
    assert mean != mean and std != std  # NaN
