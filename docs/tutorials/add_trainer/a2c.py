"""Advantage actor-critic (``trainer=a2c``): REINFORCE's objective with GAE and a critic."""

from nip.objectives.reinforce import MultiAgentReinforceLoss
from nip.trainers.ppo import per_agent_gae
from nip.trainers.registry import TRAINER_REGISTRY
from nip.trainers.rl_tensordict_base import TensorDictRlTrainer


@TRAINER_REGISTRY.register("a2c")
class A2cTrainer(TensorDictRlTrainer):
    """Each agent's log-probabilities weighted by its GAE advantage; its critic trained too."""

    def _get_loss_module_and_gae(self):
        loss_cfg = self.hyper_params.loss
        loss = MultiAgentReinforceLoss(
            self.policy_operator,
            self.value_operator,
            num_agents=self.num_agents,
            learning_agents=self.learning_agents,
            entropy_coeff=loss_cfg.entropy_coeff,
            critic_coeff=loss_cfg.critic_coeff,
            loss_critic_type=loss_cfg.loss_critic_type,
            normalize_advantage=loss_cfg.normalize_advantage,
        )
        return loss, per_agent_gae(self.hyper_params.advantage)
