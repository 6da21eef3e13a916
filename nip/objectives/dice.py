"""Episode-level Loaded-DiCE surrogates: objectives whose derivatives of every order are the
policy-gradient terms the SPG family needs.

With ``l_t`` the joint log-probability of frame ``t``'s actions (every agent's),
``w_t = sum of l`` over the episode up to and including ``t`` and
``magic(x) = exp(x - stop_grad(x))``, agent ``i``'s surrogate is

    J_i = mean over i's frames of magic(w_{t-1}) (magic(l_t) - 1) A_i,t

or, clipped like PPO (``r_t`` the ratio of ``exp(l_t)`` to its collection-time value),

    J_i = mean over i's frames of magic(w_{t-1}) (min(r_t A_i,t, clip(r_t) A_i,t) - A_i,t).

Both are 0 in value. The first derivative through the policy acting at ``t`` is the policy
gradient ``A_i,t grad l_t``; the mixed second derivative between the policies acting at
``s < t`` of the same episode is ``A_i,t grad l_s grad l_t^T``. Actions of different episodes
never meet: ``w`` restarts at each episode's first frame.
"""

from collections.abc import Sequence

import torch
from torch import Tensor


def magic(x: Tensor) -> Tensor:
    """DiCE's magic box: 1 in value, ``d magic(x) = magic(x) dx`` in derivative."""
    return torch.exp(x - x.detach())


def episode_cumsum(values: Tensor, starts: Tensor) -> Tensor:
    """Inclusive sums of ``values`` ``[rows, T]`` along each row, restarting at ``starts``.

    A row's frames before its first start continue an episode begun before the batch; they
    are summed from the row's beginning.
    """
    total = values.cumsum(1)
    before = total - values  # exclusive sums
    steps = torch.arange(values.shape[1], device=values.device).expand_as(values)
    last_start = torch.where(starts, steps, torch.zeros_like(steps)).cummax(1).values
    return total - before.gather(1, last_start)


def episode_surrogates(
    joint: Tensor,
    starts: Tensor,
    playing: Tensor,
    advantage: Tensor,
    learners: Sequence[int],
    old_joint: Tensor | None = None,
    clip_epsilon: float = 0.2,
) -> list[Tensor]:
    """``-J_i`` of each agent in ``learners`` (see the module docstring).

    Parameters
    ----------
    joint : Tensor
        ``l_t``, the joint log-probability of each frame's actions, ``[rows, T]``, with graph.
    starts : Tensor
        ``[rows, T]`` bool: the frame is the first of an episode.
    playing : Tensor
        ``[rows, T, agents]`` bool: the agent acts in the frame (the mean runs over these).
    advantage : Tensor
        ``A_i,t``, ``[rows, T, agents]``; treated as a constant.
    learners : sequence of int
        Agents whose surrogates to return.
    old_joint : Tensor, optional
        The collection-time ``l_t``: given, the clipped surrogate.
    clip_epsilon : float
        The clipped surrogate's ``epsilon``.
    """
    history = magic(episode_cumsum(joint, starts) - joint)  # magic(w_{t-1})
    advantage = advantage.detach()
    if old_joint is not None:
        ratio = torch.exp(joint - old_joint.detach())
    losses = []
    for i in learners:
        a = advantage[..., i]
        if old_joint is not None:
            clipped = ratio.clamp(1 - clip_epsilon, 1 + clip_epsilon)
            gain = torch.minimum(ratio * a, clipped * a) - a
        else:
            gain = (magic(joint) - 1) * a
        mine = playing[..., i].to(gain.dtype)
        losses.append(-(history * gain * mine).sum() / mine.sum().clamp(min=1))
    return losses
