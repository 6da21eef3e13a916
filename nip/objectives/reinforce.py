"""REINFORCE with one objective (and optionally one critic) per agent."""

from collections.abc import Sequence
from dataclasses import dataclass

from tensordict import TensorDict, TensorDictBase
from tensordict.nn import ProbabilisticTensorDictSequential, TensorDictModule
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule, distance_loss

from nip.objectives.ppo import (
    AGENT_DONE_KEY,
    PerAgentLoss,
    masked_standardize,
    reduce_per_agent,
)

# Each agent's discounted return from each frame to the end of its episode (or of the
# environment's row of the batch), written by trainer=reinforce.
REWARD_TO_GO_KEY = ("agents", "reward_to_go")


class MultiAgentReinforceLoss(PerAgentLoss, LossModule):
    """REINFORCE: ``loss_actor_i = -mean(log pi_i(a) * w_i)`` over agent ``i``'s frames.

    ``w_i`` is the reward-to-go (``("agents", "reward_to_go")``) without a critic, or the
    GAE advantage with one (standardised per agent if asked), and then
    ``loss_critic_i = critic_coeff * distance(value_i, value_target_i)`` trains the critic.
    The weights are constants (no gradient flows through them).

    Parameters
    ----------
    actor_network : ProbabilisticTensorDictSequential
        The combined policy; its distribution's ``log_prob``/``entropy`` are ``[batch, A]``.
    critic_network : TensorDictModule, optional
        The combined value network (``None``: weight by reward-to-go).
    num_agents : int
        Size of the agent dimension.
    learning_agents : sequence of bool, optional
        Which agents learn (default: all); the others' terms are zero.
    entropy_coeff, critic_coeff : float
        Weights of the entropy bonus and of the critic loss.
    loss_critic_type : str
        ``smooth_l1``, ``l1`` or ``l2``.
    normalize_advantage : bool
        Standardise advantages per agent over its frames (critic mode only).
    """

    @dataclass
    class _AcceptedKeys:
        action: NestedKey = ("agents", "action")
        advantage: NestedKey = ("agents", "advantage")
        value: NestedKey = ("agents", "state_value")
        value_target: NestedKey = ("agents", "value_target")
        reward_to_go: NestedKey = REWARD_TO_GO_KEY

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys

    def __init__(
        self,
        actor_network: ProbabilisticTensorDictSequential,
        critic_network: TensorDictModule | None = None,
        *,
        num_agents: int,
        learning_agents: Sequence[bool] | None = None,
        entropy_coeff: float = 0.0,
        critic_coeff: float = 1.0,
        loss_critic_type: str = "smooth_l1",
        normalize_advantage: bool = True,
    ):
        super().__init__()
        self._set_deprecated_ctor_keys()
        self.actor_network = actor_network
        self.critic_network = critic_network
        self._register_agents(num_agents, learning_agents)
        self.entropy_coeff = entropy_coeff
        self.critic_coeff = critic_coeff
        self.loss_critic_type = loss_critic_type
        self.standardize_advantage = normalize_advantage

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:  # noqa: D102
        playing = ~tensordict.get(AGENT_DONE_KEY)  # [B, A]
        keys = self.tensor_keys
        if self.critic_network is None:
            weights = tensordict.get(keys.reward_to_go)  # [B, A, 1]
        else:
            weights = tensordict.get(keys.advantage)
            if self.standardize_advantage:
                weights = masked_standardize(weights, playing[..., None])
        weights = weights.detach()[..., 0]
        dist = self.actor_network.get_dist(tensordict)
        log_prob = dist.log_prob(tensordict.get(keys.action))  # [B, A]
        out = TensorDict({"loss_actor": -log_prob * weights}, batch_size=[])
        if self.entropy_coeff:
            entropy = dist.entropy()
            out.set("entropy", entropy.detach().mean())
            out.set("loss_entropy", -self.entropy_coeff * entropy)
        if self.critic_network is not None:
            value = self.critic_network(tensordict.select(*self.critic_network.in_keys))
            value = value.get(keys.value)  # [B, A, 1]
            target = tensordict.get(keys.value_target).to(value.dtype)
            critic = distance_loss(value, target, loss_function=self.loss_critic_type)
            out.set("loss_critic", self.critic_coeff * critic[..., 0])
        weight = (playing & self.learning).reshape(-1, self.num_agents).to(log_prob.dtype)
        result, per_agent = reduce_per_agent(out, weight)
        result.set("agents", TensorDict(per_agent, batch_size=[self.num_agents]))
        return result
