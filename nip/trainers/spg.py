"""Stackelberg policy gradient and opponent shaping (``trainer=spg``).

The SPG family needs each agent's objective as a differentiable function of *every* agent's
policy, with second derivatives that say how one agent's policy changes the gradient of
another's objective. In this game the agents take turns: the verifier's message in round 2
shapes the prover's return in round 3. A surrogate built frame by frame would see none of
that (at most one agent acts per frame), so the objectives here are Loaded-DiCE surrogates
(Farquhar et al., 2019) over whole episodes. With ``w_t`` the log-probability of every
agent's actions in the episode up to frame ``t`` and ``magic(x) = exp(x - stop_grad(x))``:

    J_i = mean_t magic(w_{t-1}) (magic(l_t) - 1) A_i,t          (spg, lola, sos)
    J_i = mean_t magic(w_{t-1}) (min(r_t A_i,t, clip(r_t) A_i,t) - A_i,t)
                                                                 (pspg, pola, psos)

where ``l_t`` is the joint log-probability of frame ``t``'s actions, ``r_t`` its ratio to
the collection-time policy and ``A_i,t`` agent ``i``'s (standardised) advantage; means are
over agent ``i``'s frames. The first derivatives are the policy gradients of agent ``i``'s
objective through each agent's policy (at collection time, exactly PPO's); the second
derivatives carry the cross terms between actions of the same episode. Episodes are cut
where the batch starts: actions from before it are constants.

Minibatches are whole environment rows. Critics and entropy bonuses take their plain
gradients, as in PPO.
"""

import torch
from tensordict import TensorDictBase
from torch import Tensor
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.data.replay_buffers import SamplerWithoutReplacement

from nip.factory import steps_per_env
from nip.objectives.opponent_shaping import ShapingSettings, shaped_updates_and_gradients
from nip.objectives.ppo import AGENT_DONE_KEY, masked_standardize
from nip.trainers.ppo import PpoTrainer
from nip.trainers.registry import TRAINER_REGISTRY


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


@TRAINER_REGISTRY.register("spg")
class SpgTrainer(PpoTrainer):
    """PPO's loop with SPG-family updates of the agents' policies (see the module docstring)."""

    def _get_replay_buffer(self, transform=None) -> ReplayBuffer:
        """Whole environment rows, ``minibatch_size / steps`` rows per minibatch."""
        t = self.hyper_params.trainer
        steps = steps_per_env(self.hyper_params)
        return ReplayBuffer(
            storage=LazyTensorStorage(t.frames_per_batch // steps, device=self.device),
            sampler=SamplerWithoutReplacement(),
            batch_size=t.minibatch_size // steps,
            transform=transform,
        )

    def _fill_replay_buffer(self, data: TensorDictBase) -> None:
        self.replay_buffer.extend(data)  # [envs, time]: one element per row

    def _shaping_settings(self) -> ShapingSettings:
        t = self.hyper_params.trainer
        return ShapingSettings(
            variant=t.variant,
            ihvp_rank=t.ihvp_rank,
            ihvp_rho=t.ihvp_rho,
            additional_lola_term=t.additional_lola_term,
            sos_a=t.sos_a,
            sos_b=t.sos_b,
        )

    def _actor_parameters(self, name: str) -> list[Tensor]:
        """Agent ``name``'s policy parameters (its body and head), from module structure."""
        policy = self.scenario_instance.combined_policy
        modules = (policy.bodies[name], policy.heads[name])
        return [p for module in modules for p in module.parameters() if p.requires_grad]

    def _stackelberg_groups(self, learners: list[int]) -> list[list[int]]:
        """The Stackelberg sequence as groups of positions in ``learners``."""
        sequence = self.hyper_params.trainer.stackelberg_sequence
        if sequence is None:
            provers = set(self.protocol_handler.prover_names)
            sequence = [
                [n for n in self.agent_names if n not in provers],
                [n for n in self.agent_names if n in provers],
            ]
        position = {self.agent_names[agent]: k for k, agent in enumerate(learners)}
        groups = [[position[n] for n in group if n in position] for group in sequence]
        return [g for g in groups if g]

    def surrogate_losses(self, rows: TensorDictBase, learners: list[int]) -> list[Tensor]:
        """``-J_i`` of each learning agent on a minibatch of rows ``[rows, T]``."""
        loss_cfg = self.hyper_params.loss
        flat = rows.reshape(-1)
        dist = self.policy_operator.get_dist(flat)
        shape = (*rows.batch_size, self.num_agents)
        log_prob = dist.log_prob(flat["agents", "action"]).reshape(shape)
        joint = log_prob.sum(-1)  # [rows, T]
        starts = rows["round"] == 0
        history = magic(episode_cumsum(joint, starts) - joint)  # magic(w_{t-1})
        playing = ~rows[AGENT_DONE_KEY]  # [rows, T, A]
        advantage = rows["agents", "advantage"].detach()
        if loss_cfg.normalize_advantage:
            advantage = masked_standardize(
                advantage.reshape(-1, self.num_agents, 1), playing.reshape(-1, self.num_agents, 1)
            ).reshape(advantage.shape)
        advantage = advantage[..., 0]
        clipped = self.hyper_params.trainer.variant.startswith("p")
        if clipped:
            old = rows["agents", "sample_log_prob"].detach().sum(-1)
            ratio = torch.exp(joint - old)
            eps = loss_cfg.clip_epsilon
        losses = []
        for i in learners:
            a = advantage[..., i]
            if clipped:
                gain = torch.minimum(ratio * a, ratio.clamp(1 - eps, 1 + eps) * a) - a
            else:
                gain = (magic(joint) - 1) * a
            mine = playing[..., i].to(gain.dtype)
            losses.append(-(history * gain * mine).sum() / mine.sum().clamp(min=1))
        return losses

    def _backward(
        self, minibatch: TensorDictBase, loss_vals: TensorDictBase, total_loss: torch.Tensor
    ) -> None:
        # Critics and entropy bonuses: their plain gradients, as in PPO.
        plain = [v for k, v in loss_vals.items() if k in ("loss_critic", "loss_entropy")]
        if plain:
            sum(plain).backward()
        learning = self.loss_module.learning.tolist()
        learners = [i for i, learns in enumerate(learning) if learns]
        params = [self._actor_parameters(self.agent_names[i]) for i in learners]
        lookahead = [
            self.hyper_params.trainer.lr
            * self.scenario.agent_config(
                self.protocol_handler, self.hyper_params.scenario, self.agent_names[i]
            ).agent_lr_factor.actor
            for i in learners
        ]
        losses = self.surrogate_losses(minibatch, learners)
        updates, gradients = shaped_updates_and_gradients(
            losses, params, self._stackelberg_groups(learners), self._shaping_settings(), lookahead
        )
        correction = torch.zeros(self.num_agents, device=self.device)
        for i, agent_params, update, plain_gradient in zip(
            learners, params, updates, gradients, strict=True
        ):
            # How far the agent's policy update is from its own plain gradient.
            correction[i] = (update - plain_gradient).norm()
            pieces = update.split([p.numel() for p in agent_params])
            for p, piece in zip(agent_params, pieces, strict=True):
                piece = piece.reshape(p.shape)
                p.grad = piece.clone() if p.grad is None else p.grad + piece
        loss_vals.set(("agents", "shaping_correction_norm"), correction)
