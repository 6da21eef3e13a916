"""Rollout statistics helpers: values, and the device they are computed on."""

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.symbolic_shapes import ShapeEnv

from nip.stats import _grouped_mean, _mean_std

GI_LABELS = ("non_isomorphic", "isomorphic")


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


def test_episode_return_spans_collection_batches():
    """NIP episodes of 8 rounds collected 5 steps at a time: the episode that ends in the
    second batch began in the first; its return is over all 8 rounds. With a verifier that
    never decides: the no-guess reward 0.05 in its rounds 0, 2, 4, 6 and the penalty -1 for
    running out of rounds, -0.8 in all (only -0.95 from the second batch's frames)."""
    from torchrl.collectors import Collector

    from nip.config.protocol import ProtocolConfig
    from nip.operators import add_episode_return
    from nip.protocols import build_protocol_handler
    from nip.scenarios.graph_iso.environment import GraphIsoEnvironment
    from nip.stats import rollout_stats
    from tests.helpers import random_pairs
    from tests.test_accuracy import ScriptedVerifier

    handler = build_protocol_handler(ProtocolConfig())
    env = add_episode_return(GraphIsoEnvironment(random_pairs(10, 6), handler, 2, seed=0))
    collector = Collector(
        env,
        ScriptedVerifier(handler, "never"),
        frames_per_batch=2 * 5,
        total_frames=-1,
        track_traj_ids=False,
    )
    batches = iter(collector)
    first, second = next(batches), next(batches)
    collector.shutdown()
    assert not first["next", "done"].any()
    assert second["next", "done"][:, 2].all()  # round 7 ends both episodes
    stats = rollout_stats(second, handler.agent_names, label_names=GI_LABELS)
    assert stats["num_episodes"] == 2
    assert stats["verifier.mean_episode_reward"] == pytest.approx(-0.8)
    assert stats["prover.mean_episode_reward"] == 0.0
