"""The environment every scenario shares: a batch of dialogues about data examples.

Each row of the batch is one episode about one example of a dataset (a pair of graphs, an
image). In every round the agents that the protocol marks active point at items of the
example (a node of either graph, a latent pixel) for each channel and position; the
verifier's decision ends the episode early. Finished rows are refilled with a new example
at once, so episodes have variable length and straddle collection batches. A scenario's
environment says what an example looks like to the agents (:meth:`example_tensors`,
:meth:`example_specs`) and what its items are (:attr:`item_shape`); the protocol's rules,
the message history and the episode bookkeeping live here.
"""

import math
from abc import abstractmethod
from typing import Any

import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase
from torch import Tensor
from torchrl.data import Bounded, Categorical, Composite, MultiCategorical, TensorSpec, Unbounded
from torchrl.envs import EnvBase

from nip.protocols.base import CONTINUE, ProtocolHandler
from nip.utils.seeding import make_generator

# Episode seeds (for protocols whose turn order is random) are drawn from [0, 2**16).
EPISODE_SEED_HIGH = 2**16

# Observation keys that change every step or on reset; the others are fixed per episode.
MESSAGE_KEYS = ("x", "message", "message_history")


class DataCycler:
    """Serves dataset indices in shuffled epochs, in exact counts, with checkpointable state.

    Parameters
    ----------
    num_items : int
        Dataset size.
    generator : torch.Generator
        Source of the shuffles (its state is part of :meth:`state_dict`).
    shuffle : bool
        If false, serve ``0, 1, 2, ...`` cyclically (evaluation).
    """

    def __init__(self, num_items: int, generator: torch.Generator, shuffle: bool = True):
        if num_items < 1:
            # take() would loop forever on empty epochs.
            raise ValueError("a data cycler needs at least one item")
        self.num_items = num_items
        self.generator = generator
        self.shuffle = shuffle
        self._order = torch.empty(0, dtype=torch.long)
        self._cursor = 0

    def _new_epoch(self) -> Tensor:
        if self.shuffle:
            return torch.randperm(self.num_items, generator=self.generator)
        return torch.arange(self.num_items)

    def take(self, count: int) -> Tensor:
        """The next ``count`` indices (long ``[count]``), starting new epochs as needed."""
        pieces = []
        while count > 0:
            if self._cursor >= len(self._order):
                self._order, self._cursor = self._new_epoch(), 0
            piece = self._order[self._cursor : self._cursor + count]
            self._cursor += len(piece)
            count -= len(piece)
            pieces.append(piece)
        return torch.cat(pieces) if pieces else torch.empty(0, dtype=torch.long)

    def restart(self) -> None:
        """Begin a new epoch at the next :meth:`take` (evaluation serves from index 0)."""
        self._order, self._cursor = torch.empty(0, dtype=torch.long), 0

    def state_dict(self) -> dict:
        """Position in the current epoch and the generator state."""
        return {
            "order": self._order.clone(),
            "cursor": self._cursor,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output."""
        self._order = state["order"].clone()
        self._cursor = int(state["cursor"])
        self.generator.set_state(state["generator"])


class ProtocolEnvironment(EnvBase):
    """A batched TorchRL environment for interaction protocols over a dataset's examples.

    Subclasses implement :attr:`item_shape`, :meth:`example_tensors` and
    :meth:`example_specs`.

    Parameters
    ----------
    dataset : Any
        The examples served to the episodes (with labels ``y``).
    protocol_handler : ProtocolHandler
        Who may speak when, and the reward and done rules.
    num_envs : int
        Batch size ``B`` (parallel episodes).
    message_size : int
        Messages ``P`` each active agent sends per channel per round.
    seed : int
        Seeds the data order and the per-episode seeds.
    shuffle : bool
        Serve the dataset in shuffled epochs (training) or in order (evaluation).
    device : torch.device or str
        Where the tensors live.

    Notes
    -----
    Shapes: ``T`` rounds, ``A`` agents, ``C`` channels, ``P`` positions, ``K`` items per
    example (the product of :attr:`item_shape`). The action ``("agents", "action")`` packs,
    per agent, the item index in ``[0, K)`` chosen for each (channel, position) followed by
    the decision (0 reject, 1 accept, 2 continue): long ``[B, A, C*P + 1]``. ``x`` is a copy of ``message_history`` that observation
    transforms may normalise; ``message_history`` itself stays raw.
    """

    batch_locked = True

    def __init__(
        self,
        dataset: Any,
        protocol_handler: ProtocolHandler,
        num_envs: int,
        *,
        message_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        device: torch.device | str = "cpu",
    ):
        super().__init__(device=device, batch_size=torch.Size([num_envs]))
        self.protocol_handler = protocol_handler
        self.num_envs = num_envs
        self.num_rounds = protocol_handler.max_message_rounds
        self.num_agents = protocol_handler.num_agents
        self.num_channels = protocol_handler.num_channels
        self.message_size = message_size
        self.dataset = dataset
        self.dataset_size = len(dataset)
        # Per-example observations, indexed by example on reset.
        self._examples = {k: v.to(self.device) for k, v in self.example_tensors(dataset).items()}
        self._y = dataset.y.to(self.device)
        self._rng = make_generator(seed)
        self.cycler = DataCycler(len(dataset), make_generator(seed + 1), shuffle=shuffle)
        self._make_specs()

    # -- what a scenario provides --------------------------------------------------------
    @property
    @abstractmethod
    def item_shape(self) -> tuple[int, ...]:
        """The shape of an example's items that messages point at (e.g. ``(2, N)`` nodes)."""

    @classmethod
    @abstractmethod
    def example_tensors(cls, dataset: Any) -> dict[str, Tensor]:
        """The observations of every example, each ``[examples, ...]``, by key."""

    @abstractmethod
    def example_specs(self, num_envs: int) -> dict[str, TensorSpec]:
        """The specs of :meth:`example_tensors`' keys for a batch of ``num_envs``."""

    def _init_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of a subclass beyond the shared ones (for :meth:`spawn`)."""
        return {}

    # -- specs -----------------------------------------------------------------------------
    @property
    def message_shape(self) -> tuple[int, ...]:
        """``(C, P, *item_shape)``: one round's message."""
        return (self.num_channels, self.message_size, *self.item_shape)

    def examples(self, datapoint_id: Tensor) -> dict[str, Tensor]:
        """The observations (:meth:`example_tensors`) of the examples ``datapoint_id``, on the
        CPU."""
        ids = datapoint_id.to(self.device)
        return {k: v[ids].cpu() for k, v in self._examples.items()}

    @property
    def num_items(self) -> int:
        """``K``: the items a message can point at."""
        return math.prod(self.item_shape)

    def _make_specs(self) -> None:
        B, A, T = self.num_envs, self.num_agents, self.num_rounds
        C, P = self.num_channels, self.message_size
        dev = self.device
        self.observation_spec = Composite(
            round=Bounded(0, T, shape=(B,), dtype=torch.long, device=dev),
            seed=Bounded(0, EPISODE_SEED_HIGH - 1, shape=(B,), dtype=torch.long, device=dev),
            x=Unbounded(shape=(B, T, *self.message_shape), device=dev),
            message_history=Unbounded(shape=(B, T, *self.message_shape), device=dev),
            message=Unbounded(shape=(B, *self.message_shape), device=dev),
            **self.example_specs(B),
            y=Categorical(2, shape=(B,), dtype=torch.long, device=dev),
            datapoint_id=Bounded(
                0, self.dataset_size - 1, shape=(B,), dtype=torch.long, device=dev
            ),
            # The main verifier's decision in this episode so far: 0 reject, 1 accept, 2 none
            # yet. Episode state (not read by the agents) from which accuracy is computed.
            verifier_decision=Bounded(0, 2, shape=(B,), dtype=torch.long, device=dev),
            agents=Composite(
                node_active=Categorical(2, shape=(B, A, C), dtype=torch.bool, device=dev),
                decision_active=Categorical(2, shape=(B, A), dtype=torch.bool, device=dev),
                # Each agent has finished (it can finish before the episode ends).
                agent_done=Categorical(2, shape=(B, A), dtype=torch.bool, device=dev),
                shape=(B, A),
                device=dev,
            ),
            shape=(B,),
            device=dev,
        )
        nvec = torch.tensor([self.num_items] * (C * P) + [3])
        self.action_spec = Composite(
            agents=Composite(
                action=MultiCategorical(nvec, shape=(B, A, C * P + 1), device=dev),
                shape=(B, A),
                device=dev,
            ),
            shape=(B,),
            device=dev,
        )
        self.reward_spec = Composite(
            agents=Composite(reward=Unbounded(shape=(B, A, 1), device=dev), shape=(B, A)),
            shape=(B,),
            device=dev,
        )
        self.done_spec = Composite(
            done=Categorical(2, shape=(B, 1), dtype=torch.bool, device=dev),
            terminated=Categorical(2, shape=(B, 1), dtype=torch.bool, device=dev),
            shape=(B,),
            device=dev,
        )

    # -- dynamics --------------------------------------------------------------------------
    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        B, A, C, P = self.num_envs, self.num_agents, self.num_channels, self.message_size
        round_ = tensordict["round"]
        seed = tensordict["seed"]
        action = tensordict["agents", "action"]
        node_selected = action[..., : C * P].reshape(B, A, C, P)
        decision = action[..., C * P]

        done_in = tensordict.get("done", None)
        terminated_in = tensordict.get("terminated", None)
        done_in = torch.zeros_like(round_, dtype=torch.bool) if done_in is None else done_in[:, 0]
        terminated_in = torch.zeros_like(done_in) if terminated_in is None else terminated_in[:, 0]
        agent_done_in = tensordict.get(("agents", "agent_done"), done_in[:, None].expand(B, A))

        # The message of this round: the sum of the active agents' one-hot item choices.
        # An agent that has finished (zero knowledge: the verifier after deciding) is silent.
        active = self.protocol_handler.active_mask(round_, seed) & ~agent_done_in[..., None]
        one_hot = F.one_hot(node_selected, self.num_items).to(torch.float32)
        one_hot = one_hot * active[..., None, None]
        message = one_hot.sum(1).reshape(B, *self.message_shape)
        history = tensordict["message_history"].clone()
        rows = torch.arange(B, device=self.device)
        history[rows, round_.clamp(max=self.num_rounds - 1)] = message

        step = self.protocol_handler.step(
            round=round_,
            seed=seed,
            decision=decision,
            y=tensordict["y"],
            done=done_in,
            agent_done=agent_done_in,
            terminated=terminated_in,
            node_logits=tensordict.get(("agents", "main_message_logits"), None),
            decision_logits=tensordict.get(("agents", "decision_logits"), None),
        )
        done = step.shared_done | step.terminated
        agent_done = step.agent_done | done[:, None]
        decision_in = tensordict.get("verifier_decision", None)
        if decision_in is None:
            decision_in = torch.full_like(round_, CONTINUE)
        verifier_decision = torch.where(
            step.verifier_decision != CONTINUE, step.verifier_decision, decision_in
        )
        return TensorDict(
            {
                "round": round_ + 1,
                "seed": seed,
                "x": history.clone(),
                "message_history": history,
                "message": message,
                **{key: tensordict[key] for key in self._examples},
                "y": tensordict["y"],
                "datapoint_id": tensordict["datapoint_id"],
                "verifier_decision": verifier_decision,
                "done": done[:, None],
                "terminated": step.terminated[:, None],
                "agents": TensorDict(
                    {
                        "reward": step.reward[..., None],
                        "agent_done": agent_done,
                        **self._turn_masks(round_ + 1, seed, agent_done),
                    },
                    batch_size=(B, A),
                    device=self.device,
                ),
            },
            batch_size=self.batch_size,
            device=self.device,
        )

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        B, T, dev = self.num_envs, self.num_rounds, self.device
        reset = None if tensordict is None else tensordict.get("_reset", None)
        if reset is None:
            rows = torch.arange(B, device=dev)
        else:
            rows = reset.reshape(B).nonzero().squeeze(-1)
        n = len(rows)
        # Rows that are not reset are discarded by TorchRL, so they may hold zeros.
        ids = torch.zeros(B, dtype=torch.long, device=dev)
        ids[rows] = self.cycler.take(n).to(dev)
        seed = torch.zeros(B, dtype=torch.long, device=dev)
        seed[rows] = torch.randint(0, EPISODE_SEED_HIGH, (n,), generator=self._rng).to(dev)
        zeros = torch.zeros(B, T, *self.message_shape, device=dev)
        no_one_done = torch.zeros(B, self.num_agents, dtype=torch.bool, device=dev)
        return TensorDict(
            {
                "round": torch.zeros(B, dtype=torch.long, device=dev),
                "seed": seed,
                "x": zeros,
                "message_history": zeros.clone(),
                "message": torch.zeros(B, *self.message_shape, device=dev),
                **{key: values[ids] for key, values in self._examples.items()},
                "y": self._y[ids],
                "datapoint_id": ids,
                "verifier_decision": torch.full((B,), CONTINUE, dtype=torch.long, device=dev),
                "done": torch.zeros(B, 1, dtype=torch.bool, device=dev),
                "terminated": torch.zeros(B, 1, dtype=torch.bool, device=dev),
                "agents": TensorDict(
                    {
                        "agent_done": no_one_done,
                        **self._turn_masks(
                            torch.zeros(B, dtype=torch.long, device=dev), seed, no_one_done
                        ),
                    },
                    batch_size=(B, self.num_agents),
                    device=dev,
                ),
            },
            batch_size=self.batch_size,
            device=dev,
        )

    def _turn_masks(self, round_: Tensor, seed: Tensor, agent_done: Tensor) -> dict[str, Tensor]:
        """Which sampled actions of ``round_`` can have an effect (see
        :meth:`ProtocolHandler.turn_masks`).

        ``node_active`` bool ``[B, A, C]``: the agent's message in that channel will be read;
        ``decision_active`` bool ``[B, A]``: the agent's decision can end its part of the game.
        """
        node_active, decision_active = self.protocol_handler.turn_masks(round_, seed, agent_done)
        return {"node_active": node_active, "decision_active": decision_active}

    def _set_seed(self, seed: int | None) -> None:
        if seed is not None:
            self._rng.manual_seed(seed)
            self.cycler.generator.manual_seed(seed + 1)

    def spawn(
        self, *, seed: int, num_envs: int | None = None, shuffle: bool | None = None
    ) -> "ProtocolEnvironment":
        """A new environment over the same data and protocol with its own generators."""
        return type(self)(
            self.dataset,
            self.protocol_handler,
            num_envs if num_envs is not None else self.num_envs,
            message_size=self.message_size,
            seed=seed,
            shuffle=self.cycler.shuffle if shuffle is None else shuffle,
            device=self.device,
            **self._init_kwargs(),
        )

    # -- checkpointing ---------------------------------------------------------------------
    def env_state(self) -> dict:
        """The data order and episode-seed generator states (not the in-flight episodes)."""
        return {"rng": self._rng.get_state(), "cycler": self.cycler.state_dict()}

    def load_env_state(self, state: dict) -> None:
        """Restore :meth:`env_state` output."""
        self._rng.set_state(state["rng"])
        self.cycler.load_state_dict(state["cycler"])
