"""Settings every scenario's agents share (each scenario's agent schema adds its architecture)."""

from dataclasses import dataclass, field

from nip.config.choices import Activation
from nip.errors import require


@dataclass
class LrFactors:
    """Learning-rate multipliers for an agent's actor (policy) and critic (value) parameters.

    Attributes
    ----------
    actor : float
        Multiplier for the parameters of the policy network.
    critic : float
        Multiplier for the parameters of the value network.
    """

    actor: float = 1.0
    critic: float = 1.0


@dataclass
class AgentConfig:
    """What every agent has, whatever its body: heads, learning-rate factors, control.

    The learning rate of a parameter is ``trainer.lr * agent_lr_factor``, times
    ``body_lr_factor`` for body parameters (with the ``actor`` or ``critic`` factor depending
    on which network it belongs to); a scenario may split the body further. A factor of zero
    freezes those parameters.

    Attributes
    ----------
    activation : Activation
        ``tanh``, ``relu`` or ``sigmoid``, throughout the agent.
    d_decider, num_decider_layers, include_round_in_decider
        The verifier's decision MLP (width, layers, whether it sees the round).
    d_value, num_value_layers, include_round_in_value
        The value MLP.
    agent_lr_factor : LrFactors
        Multiplies ``trainer.lr`` for all of the agent's parameters.
    body_lr_factor : LrFactors
        Multiplies it further for the parameters of the agent's body.
    frozen : bool
        The agent never learns: its parameters keep their initial (or ``base_run``) values,
        take no gradient, and its loss terms do not count.
    random : bool
        The agent has no parameters and samples uniformly among the actions open to it (the
        paper's random-prover baseline); it does not learn either.
    """

    activation: Activation = Activation.tanh
    d_decider: int = 16
    num_decider_layers: int = 2
    include_round_in_decider: bool = True
    d_value: int = 16
    num_value_layers: int = 2
    include_round_in_value: bool = True
    agent_lr_factor: LrFactors = field(default_factory=LrFactors)
    body_lr_factor: LrFactors = field(default_factory=LrFactors)
    frozen: bool = False
    random: bool = False

    # Sizes that must be at least 1 (scenarios' schemas add theirs).
    SIZE_FIELDS = ("d_decider", "num_decider_layers", "d_value", "num_value_layers")
    # Learning-rate factors that a shared body needs equal for actor and critic.
    LR_FACTOR_FIELDS = ("agent_lr_factor", "body_lr_factor")

    def check(self, role: str, shared_body: bool) -> None:
        """Refuse settings of ``scenario.<role>`` that the types cannot rule out (one line).

        Raises
        ------
        NipConfigError
        """
        for key in self.SIZE_FIELDS:
            value = getattr(self, key)
            require(value >= 1, f"scenario.{role}.{key} must be at least 1, got {value}")
        if shared_body:
            require(
                all(
                    getattr(self, key).actor == getattr(self, key).critic
                    for key in self.LR_FACTOR_FIELDS
                ),
                f"trainer.use_shared_body=true needs equal actor and critic lr factors "
                f"for scenario.{role}",
            )
