"""Stackelberg policy gradient and opponent shaping (``trainer=spg``).

The SPG family needs each agent's objective as a differentiable function of *every* agent's
policy, with second derivatives that say how one agent's policy changes the gradient of
another's objective. In this game the agents take turns: the verifier's message in round 2
shapes the prover's return in round 3. A surrogate built frame by frame would see none of
that (at most one agent acts per frame), so the objectives here are Loaded-DiCE surrogates
(Farquhar et al., 2019) over whole episodes (:mod:`nip.objectives.dice`), clipped like
PPO for ``pspg``, ``pola`` and ``psos``, with each agent's (standardised) advantages. The first
derivatives are the policy gradients of agent ``i``'s objective through each agent's policy
(at collection time, exactly PPO's); the second derivatives carry the cross terms between
actions of the same episode. Episodes are cut where the batch starts: actions from before it
are constants.

Minibatches are whole environment rows. Critics and entropy bonuses take their plain
gradients, as in PPO.
"""

import torch
from tensordict import TensorDictBase
from torch import Tensor
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.data.replay_buffers import SamplerWithoutReplacement

from nip.objectives.dice import episode_surrogates
from nip.objectives.opponent_shaping import ShapingSettings, shaped_updates_and_gradients
from nip.objectives.ppo import AGENT_DONE_KEY, masked_standardize
from nip.trainers.ppo import PpoTrainer
from nip.trainers.registry import TRAINER_REGISTRY


@TRAINER_REGISTRY.register("spg")
class SpgTrainer(PpoTrainer):
    """PPO's loop with SPG-family updates of the agents' policies (see the module docstring)."""

    def _get_replay_buffer(self, transform=None) -> ReplayBuffer:
        """Whole environment rows, ``minibatch_size / steps`` rows per minibatch."""
        t = self.hyper_params.trainer
        steps = t.steps(self.hyper_params.protocol)
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
            ihvp_max_gain=t.ihvp_max_gain,
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
        playing = ~rows[AGENT_DONE_KEY]  # [rows, T, A]
        advantage = rows["agents", "advantage"].detach()
        if loss_cfg.normalize_advantage:
            advantage = masked_standardize(
                advantage.reshape(-1, self.num_agents, 1), playing.reshape(-1, self.num_agents, 1)
            ).reshape(advantage.shape)
        clipped = self.hyper_params.trainer.variant.startswith("p")
        old = rows["agents", "sample_log_prob"].sum(-1) if clipped else None
        return episode_surrogates(
            log_prob.sum(-1),
            rows["round"] == 0,
            playing,
            advantage[..., 0],
            learners,
            old_joint=old,
            clip_epsilon=loss_cfg.clip_epsilon,
        )

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
