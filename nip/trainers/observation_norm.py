"""Observation normalisation shared by the training and test environments: one mean and
standard deviation per normalised key, estimated from random play or restored."""

import math

import torch
from torchrl.envs import ObservationNorm

from nip.operators import NORMALIZED_KEYS, add_observation_norm

# Per normalised key, its transform in the training and in the test environment.
ObservationNorms = dict[str, list[ObservationNorm]]


def add_shared_observation_norms(train_environment, test_environment) -> ObservationNorms:
    """Add normalisation of every key of :data:`nip.operators.NORMALIZED_KEYS` to both
    environments.

    The statistics are placeholders (identity) until :func:`estimate_norm_stats` sets them
    or a checkpoint restores them (:func:`load_norm_state`); both environments always hold
    the same ones, so agents see identically scaled inputs in training and test.
    """
    train_norms = add_observation_norm(train_environment)
    test_norms = add_observation_norm(test_environment)
    return {key: [train_norms[key], test_norms[key]] for key in NORMALIZED_KEYS}


def norm_state(norms: ObservationNorms) -> dict[str, dict[str, torch.Tensor]]:
    """``{key: {"loc", "scale"}}`` on the CPU, as checkpoints store it."""
    return {
        key: {"loc": pair[0].loc.detach().cpu(), "scale": pair[0].scale.detach().cpu()}
        for key, pair in norms.items()
    }


def load_norm_state(norms: ObservationNorms, state: dict[str, dict[str, torch.Tensor]]) -> None:
    """Set both environments' statistics from :func:`norm_state`'s output."""
    for key, pair in norms.items():
        for norm in pair:
            norm.loc.copy_(state[key]["loc"])
            norm.scale.copy_(state[key]["scale"])


@torch.no_grad()
def estimate_norm_stats(
    norms: ObservationNorms, base_env, env_seed: int, action_seed: int, num_frames: int
) -> None:
    """Estimate one mean and standard deviation per normalised key from random play.

    Episodes are played with random actions through episode ends (environments are reset
    as they finish, nothing stops at the first end), so the statistics cover every round,
    not only freshly reset all-zero observations. A degenerate scale (a key that never
    varies) falls back to 1 instead of blowing the inputs up.

    Parameters
    ----------
    norms : ObservationNorms
        The transforms to set.
    base_env : GraphIsoEnvironment or ImageEnvironment
        The scenario's training environment; a copy of it is played (``spawn``).
    env_seed, action_seed : int
        Seeds of the copy's episodes and of the random actions (the global generator is
        restored afterwards).
    num_frames : int
        At least this many frames are played.
    """
    env = base_env.spawn(seed=env_seed)
    steps = math.ceil(num_frames / env.num_envs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(action_seed)
        rollout = env.rollout(steps, break_when_any_done=False)
    for key in NORMALIZED_KEYS:
        values = rollout[key].double()
        loc, scale = values.mean(), values.std()
        if not torch.isfinite(scale) or scale < 1e-4:
            scale = torch.ones_like(scale)
        for norm in norms[key]:
            norm.loc.fill_(loc.item())
            norm.scale.fill_(scale.item())


def describe_norm_state(state: dict[str, dict[str, torch.Tensor]]) -> str:
    """One log line: each key's location and scale."""
    return "observation normalisation: " + ", ".join(
        f"{k} loc={v['loc'].item():.4g} scale={v['scale'].item():.4g}" for k, v in state.items()
    )
