"""PPO with independent per-agent critics (``trainer=ppo``)."""

from torchrl.objectives.value import GAE

from nip.objectives.ppo import MultiAgentClipPPOLoss, MultiAgentKlPenaltyPPOLoss
from nip.trainers.registry import TRAINER_REGISTRY
from nip.trainers.rl_tensordict_base import TensorDictRlTrainer

AGENT_KEYS = {
    "action": ("agents", "action"),
    "sample_log_prob": ("agents", "sample_log_prob"),
    "value": ("agents", "state_value"),
    "advantage": ("agents", "advantage"),
    "value_target": ("agents", "value_target"),
    "reward": ("agents", "reward"),
    "done": ("agents", "done"),
    "terminated": ("agents", "terminated"),
}


# The PPO objective of each ``loss`` option, and its settings beyond the shared ones.
LOSSES = {
    "clip": (MultiAgentClipPPOLoss, ()),
    "kl_penalty": (
        MultiAgentKlPenaltyPPOLoss,
        ("kl_target", "kl_beta", "kl_increment", "kl_decrement"),
    ),
}


def per_agent_gae(advantage_cfg) -> GAE:
    """TorchRL's GAE on the agent-dimension keys, with no value network of its own.

    The trainer fills in the values of every observation and next observation in a single
    pass (see ``TensorDictRlTrainer._estimate_advantages``).
    """
    gae = GAE(
        gamma=advantage_cfg.gamma, lmbda=advantage_cfg.lmbda, value_network=None, average_gae=False
    )
    gae.set_keys(**{k: v for k, v in AGENT_KEYS.items() if k not in ("action", "sample_log_prob")})
    return gae


@TRAINER_REGISTRY.register("ppo")
class PpoTrainer(TensorDictRlTrainer):
    """PPO (``loss=clip`` or ``loss=kl_penalty``) and per-agent GAE over the combined agents."""

    def _get_loss_module_and_gae(self):
        loss_cfg = self.hyper_params.loss
        loss_class, own_settings = LOSSES[loss_cfg.name]
        loss = loss_class(
            self.policy_operator,
            self.value_operator,
            num_agents=self.num_agents,
            learning_agents=self.learning_agents,
            clip_epsilon=loss_cfg.clip_epsilon,
            entropy_coeff=loss_cfg.entropy_coeff,
            critic_coeff=loss_cfg.critic_coeff,
            loss_critic_type=loss_cfg.loss_critic_type,
            normalize_advantage=loss_cfg.normalize_advantage,
            clip_value=loss_cfg.clip_epsilon if loss_cfg.clip_value else None,
            **{key: getattr(loss_cfg, key) for key in own_settings},
        )
        loss.set_keys(**AGENT_KEYS)
        return loss, per_agent_gae(self.hyper_params.advantage)
