"""The statistics a training iteration logs: those of its rollouts and of its losses."""

from collections.abc import Sequence

from tensordict import TensorDictBase

from nip.stats import rollout_stats

# Per-agent statistics of the critic, left out for random agents (they have none).
CRITIC_STATS = ("mean_value", "mean_advantage", "mean_value_target", "residual_critic_variance")


def iteration_stats(
    rollouts: TensorDictBase,
    mean_loss_vals: TensorDictBase | None,
    *,
    agent_names: Sequence[str],
    label_names: tuple[str, str],
    random_agents: Sequence[bool],
    updated: Sequence[bool],
    scheduled: bool,
    critic_coeff: float | None,
    prefix: str = "",
) -> dict[str, float]:
    """Statistics of a batch of rollouts (and of the losses) as a flat dict of floats.

    Parameters
    ----------
    rollouts : TensorDictBase
        The collected ``[envs, time]`` batch (see :func:`nip.stats.rollout_stats`).
    mean_loss_vals : TensorDictBase or None
        The loss module's outputs averaged over the minibatches; per-agent terms under
        ``agents``.
    agent_names : sequence of str
        Agent order of the agent dimension.
    label_names : tuple of str
        The scenario's names of labels 0 and 1.
    random_agents : sequence of bool
        Per agent, whether it acts at random (it has no critic: its critic statistics
        would mean nothing and are left out).
    updated : sequence of bool
        Per agent, whether it learnt from the batch: only those have loss statistics.
    scheduled : bool
        An update schedule other than ``constant`` is on: log ``<agent>.updated``.
    critic_coeff : float or None
        The loss's critic coefficient, to log ``loss_critic_unscaled`` too.
    prefix : str
        Prepended to the rollout statistics' names (``test_``).
    """
    stats = rollout_stats(rollouts, tuple(agent_names), prefix=prefix, label_names=label_names)
    for name, random in zip(agent_names, random_agents, strict=True):
        if random:
            for key in CRITIC_STATS:
                stats.pop(f"{name}.{prefix}{key}", None)
    if mean_loss_vals is None:
        return stats
    for key, value in mean_loss_vals.items():
        if key == "agents":
            for sub_key, column in value.items():
                values = column.tolist()  # one transfer per statistic, not per agent
                for agent, learnt, v in zip(agent_names, updated, values, strict=True):
                    if learnt:  # the others have no loss
                        stats[f"{agent}.{sub_key}"] = v
        else:
            stats[key] = value.item()
    if scheduled:
        for name, u in zip(agent_names, updated, strict=True):
            stats[f"{name}.updated"] = float(u)
    if "loss_critic" in stats and critic_coeff:
        stats["loss_critic_unscaled"] = stats["loss_critic"] / float(critic_coeff)
    return stats
