"""Clipped PPO with one objective, entropy bonus and critic loss per agent."""

from collections.abc import Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor
from torchrl.objectives import ClipPPOLoss

# bool ``[batch, agent]``: the agent had finished before this frame (zero knowledge: the
# verifier after deciding). Such frames are not the agent's: they are left out of its
# losses and of its advantage statistics.
AGENT_DONE_KEY = ("agents", "agent_done")


class MultiAgentClipPPOLoss(ClipPPOLoss):
    """TorchRL's ``ClipPPOLoss`` with per-agent losses as columns of the agent dimension.

    Log-probabilities, advantages, values and targets are ``[batch, agent(, 1)]``. Each
    agent's loss terms are averaged over the frames in which it was still playing; the total
    is their sum over agents, so every agent's objective has the same weight whatever the
    number of agents. Advantages are standardised per agent over those same frames.

    Parameters
    ----------
    num_agents : int
        Size of the agent dimension.
    learning_agents : sequence of bool, optional
        Which agents learn (default: all). The loss terms of the others (frozen or random
        agents) are zero: no gradient reaches their parameters through them.
    normalize_advantage : bool
        Standardise each agent's advantages over its frames in the minibatch.
    **kwargs
        Passed to :class:`torchrl.objectives.ClipPPOLoss` (``reduction`` is forced to
        ``"none"`` and ``functional`` to ``False`` so the optimizer sees the modules' own
        parameters).

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
        self.num_agents = num_agents
        self.standardize_advantage = normalize_advantage
        learning = [True] * num_agents if learning_agents is None else list(learning_agents)
        self.register_buffer("learning", torch.tensor(learning, dtype=torch.bool), persistent=False)

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
        count = weight.sum(0).clamp(min=1)
        result = TensorDict({}, batch_size=[])
        per_agent = {}
        for key, value in out.items():
            if key.startswith("loss_"):
                columns = (value.reshape(-1, self.num_agents) * weight).sum(0) / count
                per_agent[key] = columns
                result.set(key, columns.sum())
            elif isinstance(value, torch.Tensor):
                result.set(key, value.float().mean().detach())
        result.set("agents", TensorDict(per_agent, batch_size=[self.num_agents]))
        return result

    def total_loss(self, loss_vals: TensorDictBase) -> torch.Tensor:
        """The scalar to differentiate: the sum of every top-level ``loss_*`` term."""
        return sum(v for k, v in loss_vals.items() if k.startswith("loss_"))


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
