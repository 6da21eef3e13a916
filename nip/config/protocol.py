"""Schema of the ``protocol`` config group."""

from dataclasses import dataclass

from nip.config.choices import ForceGuess


@dataclass
class ProtocolConfig:
    """Settings shared by every interaction protocol.

    Attributes
    ----------
    name : str
        Registered protocol name.
    min_message_rounds : int
        A verifier decision before round ``min_message_rounds - 1`` counts as "continue".
    max_message_rounds : int
        Rounds after which an undecided episode is terminated.
    verifier_first : bool
        The verifier speaks in round 0 (else the prover does).
    zero_knowledge : bool
        Wrap the protocol in the zero-knowledge construction.
    prover_reward : float
        Reward to a prover when the verifier takes its side.
    verifier_reward, verifier_incorrect_penalty : float
        Verifier reward for a correct / an incorrect decision.
    verifier_terminated_penalty : float
        Verifier reward when the episode runs out of rounds undecided.
    verifier_no_guess_reward : float
        Verifier reward for each active round in which it continues.
    shared_reward : bool
        Provers receive the verifier's reward (a cooperative game).
    force_guess : ForceGuess or None
        Replace the verifier's decision by ``zero``, ``one`` or the label ``y`` (debugging).
    zk_simulator_reward_coefficient : float
        Zero knowledge: scale of the simulator's reward (its similarity to the adversarial
        verifier's transcript).
    zk_aux_prover_reward_coefficient : float
        Zero knowledge: weight of that similarity in every prover's reward.
    """

    name: str = "nip"
    min_message_rounds: int = 3
    max_message_rounds: int = 8
    verifier_first: bool = True
    zero_knowledge: bool = False
    prover_reward: float = 1.0
    verifier_reward: float = 1.0
    verifier_incorrect_penalty: float = -1.0
    verifier_terminated_penalty: float = -1.0
    verifier_no_guess_reward: float = 0.05
    shared_reward: bool = False
    force_guess: ForceGuess | None = None
    zk_simulator_reward_coefficient: float = 1.0
    zk_aux_prover_reward_coefficient: float = 1.0


@dataclass
class MultiProverProtocolConfig(ProtocolConfig):
    """Protocols with two provers speaking in their own channels (debate, MNIP).

    Attributes
    ----------
    sequential : bool
        Provers speak one after the other (period-3 turns) instead of simultaneously.
    prover0_first : bool
        With sequential turns, ``prover0`` speaks before ``prover1``.
    """

    sequential: bool = False
    prover0_first: bool = True
