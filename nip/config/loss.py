"""Schema of the ``loss`` config group."""

from dataclasses import dataclass

from nip.config.choices import CriticLoss


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
    loss_critic_type : CriticLoss
        The distance between a value prediction and its target: ``smooth_l1``, ``l1`` or
        ``l2``.
    normalize_advantage : bool
        Standardise advantages per agent within each minibatch.
    clip_value : bool
        Clip the value prediction around its collection-time value with ``clip_epsilon``.
    mask_ineffective_actions : bool
        Sum each agent's log-probability and entropy over the actions that can have an
        effect only (see docs/guides/differences.md). ``false`` includes every sampled
        action, off-turn and unread ones too, as the original code does; for comparisons.
    """

    name: str = "clip"
    clip_epsilon: float = 0.2
    entropy_coeff: float = 0.001
    critic_coeff: float = 1.0
    loss_critic_type: CriticLoss = CriticLoss.smooth_l1
    normalize_advantage: bool = True
    clip_value: bool = False
    mask_ineffective_actions: bool = True


@dataclass
class KlPenaltyLossConfig(ClipLossConfig):
    """PPO with an adaptive KL penalty instead of clipping (``loss=kl_penalty``).

    Each agent's objective is ``-mean(r A) + beta * kl``, with ``kl = -mean(log r)`` over
    its frames; after every minibatch, each agent's ``beta`` is multiplied by
    ``kl_increment`` when its ``kl`` exceeded ``1.5 * kl_target`` and by ``kl_decrement``
    when it fell below ``kl_target / 1.5``. The betas are training state: checkpointed and
    restored exactly. ``clip_epsilon`` only serves ``clip_value``.

    Attributes
    ----------
    kl_target : float
        The KL per minibatch that beta steers towards.
    kl_beta : float
        Every agent's initial beta.
    kl_increment, kl_decrement : float
        Factors applied to beta when the KL is too high / too low.
    """

    name: str = "kl_penalty"
    kl_target: float = 0.01
    kl_beta: float = 1.0
    kl_increment: float = 2.0
    kl_decrement: float = 0.5


@dataclass
class ReinforceLossConfig:
    """The REINFORCE objective (``loss=reinforce``, what ``trainer=reinforce`` uses).

    Agent ``i``'s loss is ``-mean(log pi_i(a) * w_i)`` over its frames, where ``w_i`` is its
    discounted reward-to-go or, with ``trainer.use_advantage_and_critic``, its GAE advantage
    (and then a critic loss is added).

    Attributes
    ----------
    entropy_coeff : float
        Weight of an entropy bonus (0: none, as in the original REINFORCE).
    critic_coeff : float
        Weight of each agent's critic loss (with a critic).
    loss_critic_type : CriticLoss
        The distance between a value prediction and its target: ``smooth_l1``, ``l1`` or
        ``l2``.
    normalize_advantage : bool
        Standardise advantages per agent within each minibatch (with a critic; rewards-to-go
        are used as they are).
    mask_ineffective_actions : bool
        As for ``loss=clip``.
    """

    name: str = "reinforce"
    entropy_coeff: float = 0.0
    critic_coeff: float = 1.0
    loss_critic_type: CriticLoss = CriticLoss.smooth_l1
    normalize_advantage: bool = True
    mask_ineffective_actions: bool = True
