"""Statistics of a batch of rollouts, computed with tensor ops (no loop over episodes)."""

import math

import torch
from tensordict import TensorDictBase
from torch import Tensor

from nip.operators import EPISODE_REWARD_KEY
from nip.protocols.base import ACCEPT, REJECT
from nip.utils.nn import MASKED_LOGIT


def _mean_std(values: Tensor) -> tuple[float, float]:
    if values.numel() == 0:
        return math.nan, math.nan
    values = values.float()
    std = values.std(unbiased=False).item() if values.numel() > 1 else 0.0
    return values.mean().item(), std


def _grouped_mean(values: Tensor, groups: Tensor) -> Tensor:
    """Mean of ``values`` per distinct value of ``groups`` (only groups that occur).

    Works on the inputs' device (the sums are created like ``unique``, not on the CPU).
    """
    unique, inverse = torch.unique(groups, return_inverse=True)
    sums = torch.zeros_like(unique, dtype=torch.float64).index_add_(0, inverse, values.double())
    counts = torch.zeros_like(unique, dtype=torch.float64).index_add_(
        0, inverse, torch.ones_like(values, dtype=torch.float64)
    )
    return sums / counts


def _normalised_entropy(logits: Tensor) -> Tensor:
    """Entropy of ``softmax(logits)`` over the last dim divided by its maximum.

    The maximum is that of the uniform distribution over the actions that were open
    (logits above ``MASKED_LOGIT``): 1 means uniform among them. A single open action has
    no choice, and entropy 0.
    """
    log_p = torch.log_softmax(logits.float(), dim=-1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    num_open = (logits > MASKED_LOGIT / 2).sum(-1)
    most = num_open.clamp(min=2).float().log()
    return torch.where(num_open > 1, entropy / most, torch.zeros_like(entropy))


def decided_correctly(decision: Tensor, y: Tensor) -> Tensor:
    """bool: the verifier decided, and rightly.

    Labels are 0 or 1, so an undecided episode (``CONTINUE`` = 2) never equals its label.
    """
    return decision == y


def chance_accuracy(positive_fraction: float) -> float:
    """Accuracy of always giving the majority answer (``positive_fraction``: the share of
    examples labelled 1)."""
    return max(positive_fraction, 1 - positive_fraction)


def share_key(label_names: tuple[str, str], prefix: str = "") -> str:
    """The name of the statistic holding the share of label-1 examples, e.g.
    ``test_isomorphic_fraction`` (chance accuracy is the larger of it and its complement)."""
    return f"{prefix}{label_names[1]}_fraction"


def outcome_stats(
    decision: Tensor,
    y: Tensor,
    terminated: Tensor,
    prefix: str = "",
    *,
    label_names: tuple[str, str],
) -> dict[str, float]:
    """Accuracy and how episodes ended, one row per ended episode.

    Parameters
    ----------
    decision : Tensor
        long ``[E]``: the verifier's decision in the episode (0 reject, 1 accept, 2 none).
    y : Tensor
        long ``[E]``: 1 where accepting is right.
    terminated : Tensor
        bool ``[E]``: the episode ran out of rounds.
    prefix : str
        Prepended to every name.
    label_names : tuple of str
        The scenario's names of labels 0 and 1 (GI: ``non_isomorphic``, ``isomorphic``).

    Returns
    -------
    dict
        ``mean_accuracy`` / ``std_accuracy`` (an episode is correct only when the verifier
        decided and its decision equals the label), ``terminated_fraction``,
        ``accept_fraction`` and ``reject_fraction`` (shares of episodes in which the
        verifier decided so), ``<label 1>_fraction`` (e.g. ``isomorphic_fraction``: share
        of episodes where accepting is right; chance accuracy is the larger of it and its
        complement) and ``num_episodes``.
    """
    correct = decided_correctly(decision, y)
    stats = {}
    stats[f"{prefix}mean_accuracy"], stats[f"{prefix}std_accuracy"] = _mean_std(correct)
    stats[f"{prefix}terminated_fraction"] = _mean_std(terminated)[0]
    stats[f"{prefix}accept_fraction"] = _mean_std(decision == ACCEPT)[0]
    stats[f"{prefix}reject_fraction"] = _mean_std(decision == REJECT)[0]
    stats[share_key(label_names, prefix)] = _mean_std(y == 1)[0]
    stats[f"{prefix}num_episodes"] = float(decision.numel())
    return stats


def rollout_stats(
    rollouts: TensorDictBase,
    agent_names: tuple[str, ...],
    prefix: str = "",
    *,
    label_names: tuple[str, str],
) -> dict[str, float]:
    """Episode, accuracy, reward, value and entropy statistics of a ``[env, time]`` batch.

    An episode counts when it ends in the batch (``next.done``), whenever it began: its
    return and the verifier's decision are episode state that the environment carries
    across batches. Accuracy counts only decisions the verifier really took (see
    :func:`outcome_stats`); an episode that ran out of rounds is wrong.
    Values, advantages and targets are averaged over each agent's frames before it
    finished.

    Parameters
    ----------
    rollouts : TensorDictBase
        Collected data of batch shape ``[B, S]`` from an environment wrapped with
        :func:`nip.operators.add_episode_return`.
    agent_names : tuple of str
        Agent order of the agent dimension.
    prefix : str
        Prepended to every statistic's name (``test_`` for the test loop).
    label_names : tuple of str
        The scenario's names of labels 0 and 1.
    """
    done = rollouts["next", "done"][..., 0]  # [B, S]
    reward = rollouts["next", "agents", "reward"][..., 0].float()  # [B, S, A]
    decision = rollouts["next", "verifier_decision"][done]  # [E]
    y = rollouts["y"][done]
    terminated = rollouts["next", "terminated"][..., 0][done]
    stats = outcome_stats(decision, y, terminated, prefix, label_names=label_names)
    correct = decided_correctly(decision, y)
    lengths = rollouts["next", "round"][done]
    stats[f"{prefix}mean_episode_length"] = _mean_std(lengths)[0]

    datapoints = rollouts["datapoint_id"][done]
    if datapoints.numel():
        per_datapoint = _grouped_mean(correct.double(), datapoints)
        mean, std = _mean_std(per_datapoint)
        stats[f"{prefix}mean_datapoint_accuracy"] = mean
        stats[f"{prefix}std_datapoint_accuracy"] = std
        stats[f"{prefix}worst_datapoint_accuracy"] = per_datapoint.min().item()

    episode_returns = rollouts["next", *EPISODE_REWARD_KEY][..., 0][done].float()  # [E, A]
    in_game = ~rollouts["agents", "agent_done"]  # [B, S, A]: the agent had not finished

    node_logits = rollouts.get(("agents", "main_message_logits"), None)
    decision_logits = rollouts.get(("agents", "decision_logits"), None)
    node_active = rollouts.get(("agents", "node_active"), None)
    decision_active = rollouts.get(("agents", "decision_active"), None)
    value = rollouts.get(("agents", "state_value"), None)
    advantage = rollouts.get(("agents", "advantage"), None)
    target = rollouts.get(("agents", "value_target"), None)

    for i, name in enumerate(agent_names):
        p = f"{name}.{prefix}"
        stats[f"{p}mean_step_reward"] = reward[..., i].mean().item()
        returns = episode_returns[:, i]
        stats[f"{p}mean_episode_reward"] = _mean_std(returns)[0]
        if returns.numel():
            stats[f"{p}worst_episode_reward"] = _grouped_mean(returns, datapoints).min().item()
        playing = in_game[..., i]
        if value is not None:
            stats[f"{p}mean_value"] = _mean_std(value[..., i, 0][playing])[0]
        if advantage is not None:
            stats[f"{p}mean_advantage"] = _mean_std(advantage[..., i, 0][playing])[0]
        if target is not None and value is not None and playing.any():
            t, v = target[..., i, 0][playing], value[..., i, 0][playing]
            stats[f"{p}mean_value_target"] = t.mean().item()
            stats[f"{p}residual_critic_variance"] = (
                (t - v).var(unbiased=False) / t.var(unbiased=False).clamp(min=1e-6)
            ).item()
        if node_logits is not None and node_active is not None:
            active = node_active[..., i, :]  # [B, S, C]
            logits = node_logits[..., i, :, :, :][active]  # [F, P, K]
            entropy = _normalised_entropy(logits)
            stats[f"{p}mean_message_entropy"], stats[f"{p}std_message_entropy"] = _mean_std(entropy)
            max_prob = torch.softmax(logits.float(), -1).amax(-1)
            stats[f"{p}mean_max_message_prob"], stats[f"{p}std_max_message_prob"] = _mean_std(
                max_prob
            )
        if decision_logits is not None and decision_active is not None:
            active = decision_active[..., i]
            if active.any():
                entropy = _normalised_entropy(decision_logits[..., i, :][active])
                mean, std = _mean_std(entropy)
                stats[f"{p}mean_decision_entropy"], stats[f"{p}std_decision_entropy"] = mean, std
    return stats
