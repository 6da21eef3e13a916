"""Clipped PPO with one objective, entropy bonus and critic loss per agent."""

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.objectives import ClipPPOLoss


class MultiAgentClipPPOLoss(ClipPPOLoss):
    """TorchRL's ``ClipPPOLoss`` with per-agent losses as columns of the agent dimension.

    Log-probabilities, advantages, values and targets are ``[batch, agent(, 1)]``. Each
    agent's loss terms are averaged over the batch separately; the total is their sum over
    agents, so every agent's objective has the same weight whatever the number of agents.
    Advantages are standardised per agent (the agent dimension is excluded).

    Parameters
    ----------
    num_agents : int
        Size of the agent dimension.
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

    def __init__(self, *args, num_agents: int, **kwargs):
        kwargs.update(reduction="none", functional=False, normalize_advantage_exclude_dims=(-2,))
        super().__init__(*args, **kwargs)
        self.num_agents = num_agents

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:  # noqa: D102
        out = super().forward(tensordict)
        result = TensorDict({}, batch_size=[])
        per_agent = {}
        for key, value in out.items():
            if key.startswith("loss_"):
                columns = value.reshape(-1, self.num_agents).mean(0)
                per_agent[key] = columns
                result.set(key, columns.sum())
            elif isinstance(value, torch.Tensor):
                result.set(key, value.float().mean().detach())
        result.set("agents", TensorDict(per_agent, batch_size=[self.num_agents]))
        return result

    def total_loss(self, loss_vals: TensorDictBase) -> torch.Tensor:
        """The scalar to differentiate: the sum of every top-level ``loss_*`` term."""
        return sum(v for k, v in loss_vals.items() if k.startswith("loss_"))
