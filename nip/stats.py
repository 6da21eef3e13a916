"""Statistics of a batch of rollouts, computed with tensor ops (no loop over episodes)."""

import math

import torch
from tensordict import TensorDictBase
from torch import Tensor


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
    """Entropy of ``softmax(logits)`` over the last dim divided by its maximum."""
    log_p = torch.log_softmax(logits.float(), dim=-1)
    return -(log_p.exp() * log_p).sum(-1) / math.log(logits.shape[-1])


def episode_returns_at_ends(done: Tensor, reward: Tensor) -> Tensor:
    """float ``[B, S, A]``: at each frame where an episode ends, its return within the batch.

    The cumulative reward at an episode's last frame minus the cumulative reward at the
    previous episode end in the same environment row (zero elsewhere).
    """
    cumulative = reward.cumsum(1)  # [B, S, A]
    end_cumulative = torch.where(done[..., None], cumulative, torch.zeros_like(cumulative))
    previous_end = torch.cummax(
        torch.where(done, torch.arange(done.shape[1], device=done.device), -1), dim=1
    ).values  # index of the latest episode end at or before each frame, -1 if none
    previous_end = torch.cat([torch.full_like(previous_end[:, :1], -1), previous_end[:, :-1]], 1)
    start_cumulative = torch.where(
        (previous_end >= 0)[..., None],
        cumulative.gather(1, previous_end.clamp(min=0)[..., None].expand_as(cumulative)),
        torch.zeros_like(cumulative),
    )
    return end_cumulative - start_cumulative


def rollout_stats(
    rollouts: TensorDictBase,
    agent_names: tuple[str, ...],
    verifier_index: int,
    num_node_actions: int,
    prefix: str = "",
) -> dict[str, float]:
    """Episode, accuracy, reward, value and entropy statistics of a ``[env, time]`` batch.

    An episode counts when it ends in the batch (``next.done``); its reward is summed over
    its frames in this batch (an episode that began in the previous batch contributes the
    frames it has here). Accuracy is the verifier's decision against the label at the
    frames where episodes end (an episode that runs out of rounds counts as wrong).

    Parameters
    ----------
    rollouts : TensorDictBase
        Collected data of batch shape ``[B, S]``.
    agent_names : tuple of str
        Agent order of the agent dimension.
    verifier_index : int
        Index of the verifier whose decision ends episodes.
    num_node_actions : int
        ``C * P``: position of the decision in the packed action.
    prefix : str
        Prepended to every statistic's name (``test_`` for the test loop).
    """
    stats: dict[str, float] = {}
    done = rollouts["next", "done"][..., 0]  # [B, S]
    reward = rollouts["next", "agents", "reward"][..., 0].float()  # [B, S, A]
    action = rollouts["agents", "action"]
    decision = action[..., verifier_index, num_node_actions]  # [B, S]
    y = rollouts["y"]
    correct = (decision == y)[done]
    stats[f"{prefix}mean_accuracy"], stats[f"{prefix}std_accuracy"] = _mean_std(correct)
    lengths = (rollouts["round"] + 1)[done]
    stats[f"{prefix}mean_episode_length"] = _mean_std(lengths)[0]
    stats[f"{prefix}num_episodes"] = float(done.sum().item())

    datapoints = rollouts["datapoint_id"][done]
    if datapoints.numel():
        per_datapoint = _grouped_mean(correct.double(), datapoints)
        mean, std = _mean_std(per_datapoint)
        stats[f"{prefix}mean_datapoint_accuracy"] = mean
        stats[f"{prefix}std_datapoint_accuracy"] = std
        stats[f"{prefix}worst_datapoint_accuracy"] = per_datapoint.min().item()

    episode_returns = episode_returns_at_ends(done, reward)[done]  # [E, A]

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
        if value is not None:
            stats[f"{p}mean_value"] = value[..., i, 0].mean().item()
        if advantage is not None:
            stats[f"{p}mean_advantage"] = advantage[..., i, 0].mean().item()
        if target is not None and value is not None:
            t, v = target[..., i, 0].flatten(), value[..., i, 0].flatten()
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
