"""TorchRL operators around the combined agents, shared by training and evaluation."""

from collections.abc import Sequence

import torch
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.envs import Compose, EnvBase, ObservationNorm, RewardSum, TransformedEnv
from torchrl.modules import ProbabilisticActor, ValueOperator

from nip.distribution import AgentsActionDistribution

# Observation keys that agents see normalised.
NORMALIZED_KEYS = ("x", "message")
POLICY_OUT_KEYS = [("agents", "main_message_logits"), ("agents", "decision_logits")]
VALUE_KEY = ("agents", "state_value")
REWARD_KEY = ("agents", "reward")
# Each agent's return so far in the current episode, carried across collection batches.
EPISODE_REWARD_KEY = ("agents", "episode_reward")


def build_policy_operator(
    combined_policy: nn.Module,
    in_keys: Sequence[str],
    mask_ineffective_actions: bool = True,
) -> ProbabilisticActor:
    """A probabilistic actor sampling every agent's packed action ``("agents", "action")``.

    ``in_keys`` are the observation keys the scenario's policy reads (its ``policy_in_keys``).

    The turn masks ``("agents", "node_active")`` and ``("agents", "decision_active")`` come
    from the environment's observation.
    The log-probability ``("agents", "sample_log_prob")`` is ``[..., A]``: one joint value per
    agent over the actions that can have an effect (over all sampled actions if
    ``mask_ineffective_actions`` is false).
    """
    module = TensorDictModule(combined_policy, in_keys=list(in_keys), out_keys=POLICY_OUT_KEYS)
    return ProbabilisticActor(
        module,
        in_keys={
            "node_logits": ("agents", "main_message_logits"),
            "decision_logits": ("agents", "decision_logits"),
            "node_active": ("agents", "node_active"),
            "decision_active": ("agents", "decision_active"),
        },
        out_keys=[("agents", "action")],
        distribution_class=AgentsActionDistribution,
        distribution_kwargs={"mask_actions": mask_ineffective_actions},
        return_log_prob=True,
        log_prob_key=("agents", "sample_log_prob"),
    )


def build_value_operator(combined_value: nn.Module, in_keys: Sequence[str]) -> ValueOperator:
    """Every agent's value estimate as ``("agents", "state_value")``, ``[..., A, 1]``, from
    the observation keys ``in_keys`` (the scenario's ``value_in_keys``)."""
    return ValueOperator(combined_value, in_keys=list(in_keys), out_keys=[VALUE_KEY])


def add_episode_return(env: EnvBase) -> TransformedEnv:
    """Wrap ``env`` so every agent's return accumulates over each whole episode.

    TorchRL's :class:`~torchrl.envs.RewardSum` keeps ``("agents", "episode_reward")``
    (``[B, A, 1]``) as environment state: it survives the end of a collection batch (so an
    episode that straddles two batches is summed whole) and is part of the collector state
    that checkpoints hold. At a frame where an episode ends, ``("next", "agents",
    "episode_reward")`` is that episode's return.
    """
    return TransformedEnv(
        env, Compose(RewardSum(in_keys=[REWARD_KEY], out_keys=[EPISODE_REWARD_KEY]))
    )


def add_observation_norm(
    env: TransformedEnv, stats: dict[str, dict[str, torch.Tensor]] | None = None
) -> dict[str, ObservationNorm]:
    """Append standardisation of ``x`` and ``message`` (scalar statistics) to ``env``.

    Parameters
    ----------
    env : TransformedEnv
        The environment (see :func:`add_episode_return`), changed in place.
    stats : dict, optional
        ``{key: {"loc": tensor, "scale": tensor}}``; identity until set otherwise.

    Returns
    -------
    dict
        The transforms by key (to update their statistics).
    """
    norms = {}
    for key in NORMALIZED_KEYS:
        loc = torch.zeros((), device=env.device)
        scale = torch.ones((), device=env.device)
        if stats is not None:
            loc, scale = stats[key]["loc"].to(env.device), stats[key]["scale"].to(env.device)
        norms[key] = ObservationNorm(
            loc=loc.clone(), scale=scale.clone(), in_keys=[key], standard_normal=True
        )
        env.append_transform(norms[key])
    return norms
