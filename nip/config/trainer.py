"""Schema of the ``trainer`` config group."""

from dataclasses import dataclass
from typing import Any, ClassVar

from nip.config.choices import SpgVariant
from nip.config.memory import check_model_fits
from nip.errors import require


def shares_body(trainer_cfg: Any) -> bool:
    """Whether the agents' policy and value heads share one body under this trainer."""
    return bool(getattr(trainer_cfg, "use_shared_body", False))


@dataclass
class PpoTrainerConfig:
    """PPO training loop settings (``trainer=ppo``).

    Attributes
    ----------
    num_iterations : int
        Number of collect-and-update iterations.
    frames_per_batch : int
        Environment frames collected per iteration (all environments together).
    steps_per_env : int or None
        Steps each parallel environment takes per iteration; ``None`` means the protocol's
        ``max_message_rounds``. The number of parallel environments is
        ``frames_per_batch // steps_per_env``.
    num_epochs : int
        Passes over each iteration's data.
    minibatch_size : int
        Frames per gradient step.
    lr : float
        Base learning rate; agents' factors multiply it (see ``scenario.prover``).
    anneal_lr : bool
        Decay every learning rate linearly to zero over ``num_iterations``.
    max_grad_norm : float
        Gradient-norm clipping threshold.
    normalize_observations : bool
        Standardise the message observations with statistics from random-action rollouts.
    num_normalization_frames : int
        Frames of random-action rollouts used to estimate the normalisation statistics.
    num_test_passes : int
        Passes over the test set in each test; each pass plays one complete episode per test
        pair, with freshly sampled actions.
    test_interval : int
        Also test every this many iterations during training (``test_`` lines in
        ``metrics.jsonl`` tagged with the iteration); 0 tests only at the end.
    test_greedy : bool
        Test with every agent's most likely action instead of sampling actions as in
        training (the default, and how the paper evaluates).
    use_shared_body : bool
        Share one body between each agent's policy and value heads.
    pretrain_agents : bool
        Before RL, train each agent's policy body with a supervised head to classify the
        training data (label 1 or 0) from the example alone, before any message; cached by
        hyper-parameters.
    pretrain_epochs, pretrain_batch_size, pretrain_lr : int, int, float
        Settings of that supervised pretraining.
    """

    # The ``loss`` options this trainer can optimise.
    LOSSES: ClassVar[tuple[str, ...]] = ("clip", "kl_penalty")
    # Settings a resumed run may change: the length of training and how tests are run (each
    # test line records whether it was greedy); the anneal_lr check guards the first.
    EXTENSIBLE_FIELDS: ClassVar[tuple[str, ...]] = (
        "num_iterations",
        "num_test_passes",
        "test_interval",
        "test_greedy",
    )
    # The trainer plays episodes in the scenario's environments (the factory builds them).
    USES_ENVIRONMENTS: ClassVar[bool] = True
    # The setting that counts the run's iterations (its checkpoints' ``iteration``).
    LENGTH_FIELD: ClassVar[str] = "num_iterations"

    name: str = "ppo"
    num_iterations: int = 5000
    frames_per_batch: int = 2048
    steps_per_env: int | None = None
    num_epochs: int = 10
    minibatch_size: int = 256
    lr: float = 3e-4
    anneal_lr: bool = False
    max_grad_norm: float = 0.5
    normalize_observations: bool = True
    num_normalization_frames: int = 4096
    num_test_passes: int = 1
    test_interval: int = 50
    test_greedy: bool = False
    use_shared_body: bool = False
    pretrain_agents: bool = False
    pretrain_epochs: int = 10
    pretrain_batch_size: int = 256
    pretrain_lr: float = 1e-3

    def check_memory(self, hp: Any, handler: Any, available: int) -> None:
        """Refuse batches and networks that obviously cannot fit in ``available`` bytes.

        Raises
        ------
        NipConfigError
        """
        from nip.scenarios import get_scenario

        frame = get_scenario(hp.scenario.name).frame_bytes(hp, handler)
        frames = 2 * self.frames_per_batch * frame
        require(
            frames <= available,
            f"trainer.frames_per_batch={self.frames_per_batch} needs about {frames / 1e9:,.1f} GB "
            f"for one iteration's frames (the batch and the replay buffer), more than the "
            f"{available / 1e9:,.1f} GB of memory available",
        )
        # The largest batch the networks see: a minibatch, or all environments while collecting.
        batch = max(self.minibatch_size, self.frames_per_batch // self.steps(hp.protocol))
        check_model_fits(hp, handler, batch, available=available)

    def steps(self, protocol: Any) -> int:
        """Steps each parallel environment takes per iteration."""
        return self.steps_per_env if self.steps_per_env is not None else protocol.max_message_rounds

    def check(self, hp: Any, handler: Any) -> None:
        """Refuse settings of this trainer that its types cannot rule out (one line each).

        Parameters
        ----------
        hp : HyperParameters
            The whole configuration.
        handler : ProtocolHandler
            The protocol's agents and rounds.

        Raises
        ------
        NipConfigError
        """
        counts = (
            "num_iterations",
            "frames_per_batch",
            "num_epochs",
            "minibatch_size",
            "pretrain_epochs",
            "pretrain_batch_size",
        )
        for key in counts:
            value = getattr(self, key)
            require(value >= 1, f"trainer.{key} must be at least 1, got {value}")
        require(self.lr >= 0, f"trainer.lr must be non-negative, got {self.lr}")
        require(self.num_test_passes >= 1, "trainer.num_test_passes must be at least 1")
        require(
            self.test_interval >= 0, f"trainer.test_interval must be >= 0, got {self.test_interval}"
        )
        require(self.num_normalization_frames >= 1, "trainer.num_normalization_frames must be >= 1")
        steps = self.steps(hp.protocol)
        require(steps >= 1, "trainer.steps_per_env must be at least 1")
        require(
            self.frames_per_batch % steps == 0,
            f"trainer.frames_per_batch ({self.frames_per_batch}) is not divisible by the steps "
            f"per environment ({steps}; trainer.steps_per_env or protocol.max_message_rounds)",
        )
        require(
            self.minibatch_size <= self.frames_per_batch,
            f"trainer.minibatch_size ({self.minibatch_size}) is larger than "
            f"trainer.frames_per_batch ({self.frames_per_batch})",
        )
        require(
            self.frames_per_batch % self.minibatch_size == 0,
            f"trainer.frames_per_batch ({self.frames_per_batch}) is not divisible by "
            f"trainer.minibatch_size ({self.minibatch_size})",
        )
        require(
            self.max_grad_norm > 0,
            f"trainer.max_grad_norm must be positive, got {self.max_grad_norm}",
        )
        require(
            self.pretrain_lr >= 0,
            f"trainer.pretrain_lr must be non-negative, got {self.pretrain_lr}",
        )
        require(
            hp.loss.name in self.LOSSES,
            f"trainer={self.name} works with loss={' or loss='.join(self.LOSSES)}, "
            f"not loss={hp.loss.name}",
        )


@dataclass
class ReinforceTrainerConfig(PpoTrainerConfig):
    """REINFORCE (``trainer=reinforce``, with ``loss=reinforce``): the loop settings of PPO.

    Attributes
    ----------
    use_advantage_and_critic : bool
        Weight log-probabilities by GAE advantages from a learned critic (and train it);
        ``false`` weights them by each agent's discounted reward-to-go, with no critic.
    """

    LOSSES: ClassVar[tuple[str, ...]] = ("reinforce",)

    name: str = "reinforce"
    num_epochs: int = 1
    use_advantage_and_critic: bool = False


@dataclass
class SpgTrainerConfig(PpoTrainerConfig):
    """Stackelberg policy gradient and opponent shaping (``trainer=spg``, with ``loss=clip``).

    Minibatches are whole environment rows (``minibatch_size`` frames, a multiple of the
    steps per environment), so that each agent's objective can see how earlier actions of
    the episode, every agent's, led to its advantages (see :mod:`nip.trainers.spg`).

    Attributes
    ----------
    variant : SpgVariant
        ``spg``, ``pspg``, ``lola``, ``pola``, ``sos`` or ``psos`` (``p``: PPO-clipped).
    stackelberg_sequence : list of lists of str, optional
        Agent groups, leaders first; default: the non-provers (the verifier's side), then the
        provers.
    ihvp_rank, ihvp_rho : int, float
        Nyström inverse-Hessian-vector products: rows sampled, regularisation.
    ihvp_max_gain : float
        Stop the run (with its checkpoint intact) when ``(H + rho I)^-1`` lengthens a vector
        more than this many times ``1 / rho`` (never more than once for a positive
        semi-definite follower Hessian): ``H + rho I`` is then near-singular and the
        correction would be noise along one eigenvector.
    additional_lola_term : bool
        LOLA's look-ahead term besides its shaping term.
    sos_a, sos_b : float
        SOS's scaling and threshold.
    """

    LOSSES: ClassVar[tuple[str, ...]] = ("clip",)

    name: str = "spg"
    variant: SpgVariant = SpgVariant.psos
    stackelberg_sequence: list[list[str]] | None = None
    ihvp_rank: int = 5
    ihvp_rho: float = 0.1
    ihvp_max_gain: float = 1000.0
    additional_lola_term: bool = True
    sos_a: float = 0.5
    sos_b: float = 0.1

    def check(self, hp: Any, handler: Any) -> None:  # noqa: D102
        super().check(hp, handler)
        require(self.ihvp_rank >= 1, f"trainer.ihvp_rank must be at least 1, got {self.ihvp_rank}")
        require(self.ihvp_rho > 0, f"trainer.ihvp_rho must be positive, got {self.ihvp_rho}")
        require(
            self.ihvp_max_gain >= 1,
            f"trainer.ihvp_max_gain must be at least 1, got {self.ihvp_max_gain}",
        )
        steps = self.steps(hp.protocol)
        require(
            self.minibatch_size % steps == 0,
            f"trainer=spg samples whole environment rows: trainer.minibatch_size "
            f"({self.minibatch_size}) must be a multiple of the steps per environment ({steps})",
        )
        if self.stackelberg_sequence is not None:
            named = sorted(a for group in self.stackelberg_sequence for a in group)
            require(
                named == sorted(handler.agent_names),
                f"trainer.stackelberg_sequence must name every agent once "
                f"({', '.join(handler.agent_names)}), got {self.stackelberg_sequence}",
            )


@dataclass
class SoloAgentTrainerConfig:
    """Supervised solo training (``trainer=solo_agent``): no interaction, no RL.

    Every learning agent's policy body gets a solo head (an MLP from the body's
    representation to reject/accept logits), and body and head are trained together with a
    cross-entropy loss to classify the training data from what the body sees before any
    message is exchanged. The baseline of what each agent can decide alone.

    Attributes
    ----------
    num_epochs : int
        Passes over the training part of the training split (one "iteration" each in
        ``metrics.jsonl`` and in checkpoints).
    batch_size : int
        Examples per gradient step.
    lr : float
        Adam's learning rate for the solo heads, and for the bodies unless the agents'
        ``body_lr_factor.actor`` (and, for GI, ``gnn_lr_factor.actor``) scale it.
    body_lr_factor_override : bool
        Train the bodies at ``lr`` too, ignoring the agents' body learning-rate factors.
    test_size : float
        Fraction of the training split held out (seeded) to measure accuracy after every
        epoch; 0 holds nothing out. The final test uses the scenario's test split.
    """

    LOSSES: ClassVar[tuple[str, ...] | None] = None  # trains with cross-entropy, no ``loss``
    EXTENSIBLE_FIELDS: ClassVar[tuple[str, ...]] = ("num_epochs",)
    USES_ENVIRONMENTS: ClassVar[bool] = False
    LENGTH_FIELD: ClassVar[str] = "num_epochs"

    name: str = "solo_agent"
    num_epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    body_lr_factor_override: bool = False
    test_size: float = 0.2

    def check(self, hp: Any, handler: Any) -> None:
        """Refuse settings this trainer cannot honour (one line each).

        Raises
        ------
        NipConfigError
        """
        require(
            self.num_epochs >= 1, f"trainer.num_epochs must be at least 1, got {self.num_epochs}"
        )
        require(
            self.batch_size >= 1, f"trainer.batch_size must be at least 1, got {self.batch_size}"
        )
        require(self.lr > 0, f"trainer.lr must be positive, got {self.lr}")
        require(
            0 <= self.test_size < 1,
            f"trainer.test_size must be in [0, 1), got {self.test_size}",
        )
        require(
            hp.schedule.name == "constant",
            f"trainer=solo_agent trains every learning agent in every epoch; "
            f"schedule={hp.schedule.name} does not apply to it",
        )
        require(
            hp.base_run.run_id is None,
            "trainer=solo_agent starts from freshly initialised bodies; base_run.run_id is "
            "not supported with it",
        )

    def check_memory(self, hp: Any, handler: Any, available: int) -> None:
        """Refuse networks that obviously cannot fit in ``available`` bytes for a batch.

        Raises
        ------
        NipConfigError
        """

        check_model_fits(hp, handler, self.batch_size, available=available)
