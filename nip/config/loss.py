"""Schema of the ``loss`` config group."""

from dataclasses import dataclass


@dataclass
class ClipLossConfig:
    """Clipped PPO objective (``loss=clip``).

    Attributes
    ----------
    clip_epsilon : float
        Ratio clipping range.
    entropy_coeff : float
        Weight of each agent's entropy bonus.
    critic_coeff : float
        Weight of each agent's critic loss.
    loss_critic_type : str
        ``smooth_l1``, ``l1`` or ``l2``.
    normalize_advantage : bool
        Standardise advantages per agent within each minibatch.
    clip_value : bool
        Clip the value prediction around its collection-time value with ``clip_epsilon``.
    mask_ineffective_actions : bool
        Sum each agent's log-probability and entropy over the actions that can have an
        effect only (see the README). ``false`` includes every sampled action, off-turn and
        unread ones too, as the original code does; for comparisons.
    """

    name: str = "clip"
    clip_epsilon: float = 0.2
    entropy_coeff: float = 0.001
    critic_coeff: float = 1.0
    loss_critic_type: str = "smooth_l1"
    normalize_advantage: bool = True
    clip_value: bool = False
    mask_ineffective_actions: bool = True
