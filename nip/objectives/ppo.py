"""PPO (clipped or KL-penalised) with one objective, entropy bonus and critic loss per agent."""

from collections.abc import Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor
from torchrl.objectives import ClipPPOLoss, PPOLoss

# bool ``[batch, agent]``: the agent had finished before this frame (zero knowledge: the
# verifier after deciding). Such frames are not the agent's: they are left out of its
# losses and of its advantage statistics.
AGENT_DONE_KEY = ("agents", "agent_done")


class PerAgentLoss:
    """What every loss module of the trainers shares (a mixin beside a TorchRL ``LossModule``).

    ``learning`` (bool ``[A]``) marks the agents whose terms count; the trainer updates it in
    place from the update schedule. ``training_state`` is what training changes in the loss
    besides the networks, checkpointed with them (none here).
    """

    learning: Tensor

    def _register_agents(self, num_agents: int, learning_agents: Sequence[bool] | None) -> None:
        self.num_agents = num_agents
        learning = [True] * num_agents if learning_agents is None else list(learning_agents)
        self.register_buffer("learning", torch.tensor(learning, dtype=torch.bool), persistent=False)

    def total_loss(self, loss_vals: TensorDictBase) -> torch.Tensor:
        """The scalar to differentiate: the sum of every top-level ``loss_*`` term."""
        return sum(v for k, v in loss_vals.items() if k.startswith("loss_"))

    def training_state(self) -> dict[str, Tensor]:
        """State that training changes besides the networks (checkpointed with them)."""
        return {}

    def load_training_state(self, state: dict[str, Tensor]) -> None:
        """Restore what :meth:`training_state` returned."""


class _PerAgentPpoLoss(PerAgentLoss):
    """Per-agent losses on top of a TorchRL PPO loss (a mixin placed before it in the bases).

    Log-probabilities, advantages, values and targets are ``[batch, agent(, 1)]``. Each
    agent's loss terms are averaged over the frames in which it was still playing; the total
    is their sum over agents, so every agent's objective has the same weight whatever the
    number of agents. Advantages are standardised per agent over those same frames.

    Parameters
    ----------
    num_agents : int
        Size of the agent dimension.
    learning_agents : sequence of bool, optional
        Which agents learn (default: all). The loss terms of the others (frozen, random or
        off-schedule agents) are zero: no gradient reaches their parameters through them.
    normalize_advantage : bool
        Standardise each agent's advantages over its frames in the minibatch.
    **kwargs
        Passed to the TorchRL loss (``reduction`` is forced to ``"none"`` and ``functional``
        to ``False`` so the optimizer sees the modules' own parameters).

    Notes
    -----
    The output holds each ``loss_*`` summed over agents (a scalar, what ``backward`` uses),
    the per-agent values under ``("agents", "loss_*")`` (shape ``[A]``), and TorchRL's
    diagnostics (``entropy``, ``ESS``, ``clip_fraction``, ``kl_approx``, ...).
    """

    def __init__(
        self,
        *args,
        num_agents: int,
        learning_agents: Sequence[bool] | None = None,
        normalize_advantage: bool = True,
        **kwargs,
    ):
        # Standardisation happens here, restricted to each agent's frames; TorchRL's would
        # include the frames after an agent finished.
        kwargs.update(reduction="none", functional=False, normalize_advantage=False)
        super().__init__(*args, **kwargs)
        self._register_agents(num_agents, learning_agents)
        self.standardize_advantage = normalize_advantage

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:  # noqa: D102
        playing = ~tensordict.get(AGENT_DONE_KEY)  # [B, A]
        advantage = tensordict.get(self.tensor_keys.advantage)  # [B, A, 1]
        if self.standardize_advantage:
            advantage = masked_standardize(advantage, playing[..., None])
        tensordict = tensordict.clone(False)
        tensordict.set(
            self.tensor_keys.advantage,
            torch.where(playing[..., None], advantage, torch.zeros_like(advantage)),
        )
        out = super().forward(tensordict)
        weight = (playing & self.learning).reshape(-1, self.num_agents).to(advantage.dtype)
        result, per_agent = reduce_per_agent(out, weight)
        self._extra_terms(result, per_agent, weight, weight.sum(0).clamp(min=1))
        result.set("agents", TensorDict(per_agent, batch_size=[self.num_agents]))
        return result

    def _extra_terms(
        self, result: TensorDictBase, per_agent: dict[str, Tensor], weight: Tensor, count: Tensor
    ) -> None:
        """Add loss terms of a subclass (``weight`` ``[frames, A]`` marks each agent's frames)."""


class MultiAgentClipPPOLoss(_PerAgentPpoLoss, ClipPPOLoss):
    """TorchRL's ``ClipPPOLoss`` with per-agent losses as columns of the agent dimension.

    See :class:`_PerAgentPpoLoss` for the parameters.
    """


class MultiAgentKlPenaltyPPOLoss(_PerAgentPpoLoss, PPOLoss):
    """PPO with a per-agent adaptive KL penalty (``loss=kl_penalty``).

    Agent ``i``'s objective is TorchRL's unclipped ``-mean(r_i A_i)`` plus
    ``loss_kl_penalty_i = beta_i * kl_i``, where ``kl_i = -mean(log r_i)`` over its frames
    (an estimate of KL(old || new) from the sampled actions). After each minibatch,
    ``beta_i`` is multiplied by ``kl_increment`` if ``kl_i > 1.5 kl_target`` and by
    ``kl_decrement`` if ``kl_i < kl_target / 1.5`` (agents that did not learn keep theirs).

    Parameters
    ----------
    kl_target, kl_beta, kl_increment, kl_decrement : float
        See :class:`nip.config.loss.KlPenaltyLossConfig`.
    **kwargs
        As for :class:`_PerAgentPpoLoss`; ``clip_epsilon`` is dropped (it only clips values).
    """

    def __init__(
        self,
        *args,
        kl_target: float,
        kl_beta: float,
        kl_increment: float,
        kl_decrement: float,
        **kwargs,
    ):
        kwargs.pop("clip_epsilon", None)
        super().__init__(*args, **kwargs)
        self.kl_target = kl_target
        self.kl_increment = kl_increment
        self.kl_decrement = kl_decrement
        self.register_buffer("kl_beta", torch.full((self.num_agents,), float(kl_beta)))
        self._log_weight_of_forward: Tensor | None = None

    def _log_weight(self, tensordict: TensorDictBase, adv_shape: torch.Size):
        # TorchRL computes the log-ratios inside its forward; keep them for the penalty.
        out = super()._log_weight(tensordict, adv_shape=adv_shape)
        self._log_weight_of_forward = out[0]
        return out

    def _extra_terms(
        self, result: TensorDictBase, per_agent: dict[str, Tensor], weight: Tensor, count: Tensor
    ) -> None:
        log_weight = self._log_weight_of_forward.reshape(-1, self.num_agents)
        self._log_weight_of_forward = None
        kl = -(log_weight * weight).sum(0) / count  # [A], differentiable
        beta = self.kl_beta.clone()  # the adaptation below must not touch the graph
        penalty = beta * kl
        per_agent["loss_kl_penalty"] = penalty
        result.set("loss_kl_penalty", penalty.sum())
        per_agent["kl"] = kl.detach()
        per_agent["kl_beta"] = beta
        with torch.no_grad():
            adapting = weight.sum(0) > 0
            factor = torch.where(
                kl > 1.5 * self.kl_target,
                self.kl_increment,
                torch.where(kl < self.kl_target / 1.5, self.kl_decrement, 1.0),
            )
            self.kl_beta.mul_(torch.where(adapting, factor, 1.0))

    def training_state(self) -> dict[str, Tensor]:  # noqa: D102
        return {"kl_beta": self.kl_beta.detach().clone()}

    def load_training_state(self, state: dict[str, Tensor]) -> None:  # noqa: D102
        self.kl_beta.copy_(state["kl_beta"])


def reduce_per_agent(
    out: TensorDictBase, weight: Tensor
) -> tuple[TensorDictBase, dict[str, Tensor]]:
    """Per-agent loss columns and their sums from per-frame losses.

    Parameters
    ----------
    out : TensorDictBase
        A loss module's output: ``loss_*`` terms per frame and agent (any shape that
        flattens to ``[frames, A]``), and diagnostics.
    weight : Tensor
        float ``[frames, A]``: 1 on each agent's frames that count, else 0.

    Returns
    -------
    result : TensorDictBase
        Each ``loss_*`` summed over agents (what ``backward`` uses) and each diagnostic
        averaged (detached).
    per_agent : dict
        Each ``loss_*`` averaged over each agent's frames, ``[A]``.
    """
    num_agents = weight.shape[-1]
    count = weight.sum(0).clamp(min=1)
    result = TensorDict({}, batch_size=[])
    per_agent = {}
    for key, value in out.items():
        if key.startswith("loss_"):
            columns = (value.reshape(-1, num_agents) * weight).sum(0) / count
            per_agent[key] = columns
            result.set(key, columns.sum())
        elif isinstance(value, torch.Tensor):
            result.set(key, value.float().mean().detach())
    return result, per_agent


def masked_standardize(values: Tensor, mask: Tensor, eps: float = 1e-6) -> Tensor:
    """Standardise ``values`` ``[batch, agent, 1]`` per agent over the frames in ``mask``.

    The mean and the unbiased standard deviation (clamped below at ``eps``) are those of
    the masked frames, as TorchRL's standardisation computes them over all frames.
    """
    weight = mask.to(values.dtype)
    count = weight.sum(0, keepdim=True)
    mean = (values * weight).sum(0, keepdim=True) / count.clamp(min=1)
    variance = ((values - mean) ** 2 * weight).sum(0, keepdim=True) / (count - 1).clamp(min=1)
    return (values - mean) / variance.sqrt().clamp(min=eps)
