"""REINFORCE (``trainer=reinforce``): reward-to-go, or GAE advantages with a critic."""

import torch
from tensordict import TensorDictBase

from nip.objectives.reinforce import REWARD_TO_GO_KEY, MultiAgentReinforceLoss
from nip.trainers.ppo import per_agent_gae
from nip.trainers.registry import TRAINER_REGISTRY
from nip.trainers.rl_tensordict_base import TensorDictRlTrainer


@TRAINER_REGISTRY.register("reinforce")
class ReinforceTrainer(TensorDictRlTrainer):
    """REINFORCE over the combined agents.

    Without a critic (the default), each agent's log-probabilities are weighted by its
    discounted reward-to-go; with ``trainer.use_advantage_and_critic``, by its GAE advantage,
    and its critic is trained alongside.
    """

    @property
    def uses_critic(self) -> bool:
        """Whether advantages come from a learned critic."""
        return self.hyper_params.trainer.use_advantage_and_critic

    def _get_loss_module_and_gae(self):
        loss_cfg = self.hyper_params.loss
        loss = MultiAgentReinforceLoss(
            self.policy_operator,
            self.value_operator if self.uses_critic else None,
            num_agents=self.num_agents,
            learning_agents=self.learning_agents,
            entropy_coeff=loss_cfg.entropy_coeff,
            critic_coeff=loss_cfg.critic_coeff,
            loss_critic_type=loss_cfg.loss_critic_type,
            normalize_advantage=loss_cfg.normalize_advantage,
        )
        if not self.uses_critic:
            return loss, None
        return loss, per_agent_gae(self.hyper_params.advantage)

    def _estimate_advantages(self, data: TensorDictBase) -> None:
        super()._estimate_advantages(data)  # GAE with a critic; episode ends either way
        if not self.uses_critic:
            data.set(REWARD_TO_GO_KEY, reward_to_go(data, self.hyper_params.advantage.gamma))


def reward_to_go(data: TensorDictBase, gamma: float) -> torch.Tensor:
    """Each agent's discounted return from each frame of a ``[envs, time]`` batch.

    The sum runs to the end of the agent's episode (``("next", "agents", "done")``) or to
    the end of the environment's row, whichever comes first: an episode that the batch cuts
    off counts only the rewards collected so far, never those of the next row's episode.

    Returns
    -------
    Tensor
        float ``[envs, time, A, 1]``.
    """
    reward = data["next", "agents", "reward"].float()  # [B, T, A, 1]
    carry_on = ~data["next", "agents", "done"]
    returns = torch.empty_like(reward)
    running = torch.zeros_like(reward[:, 0])
    # A loop over the (few) steps of a row; every environment and agent at once.
    for t in range(reward.shape[1] - 1, -1, -1):
        running = reward[:, t] + gamma * running * carry_on[:, t]
        returns[:, t] = running
    return returns
