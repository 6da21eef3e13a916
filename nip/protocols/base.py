"""The protocol-handler interface and the default single-verifier step rules."""

from abc import ABC, abstractmethod
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor

from nip.config.protocol import ProtocolConfig
from nip.errors import NipConfigError
from nip.registry import Registry

PROTOCOL_REGISTRY = Registry("protocol")

# Verifier decisions, as sampled by the policy and read by the protocol.
REJECT, ACCEPT, CONTINUE = 0, 1, 2


class ProtocolStep(NamedTuple):
    """What one protocol step decides, elementwise over the batch.

    Attributes
    ----------
    shared_done : Tensor
        bool ``[...]``: the episode ended because a verifier decided.
    agent_done : Tensor
        bool ``[..., agent]``: each agent is finished.
    terminated : Tensor
        bool ``[...]``: the episode ran out of rounds undecided.
    reward : Tensor
        float ``[..., agent]``.
    verifier_decision : Tensor
        long ``[...]``: the main verifier's decision that took effect in this step (``REJECT``
        or ``ACCEPT``), or ``CONTINUE`` where it did not decide. Accuracy is read from here,
        never from a sampled action the environment ignored.
    """

    shared_done: Tensor
    agent_done: Tensor
    terminated: Tensor
    reward: Tensor
    verifier_decision: Tensor


class ProtocolHandler(ABC):
    """Rules of one interaction protocol.

    Subclasses define the agents and channels and who is active in which round; the
    environment and the combined agents consult only this interface, so nothing outside
    ``nip/protocols`` branches on the protocol.

    Parameters
    ----------
    params : ProtocolConfig
        The ``protocol`` config group.
    """

    agent_names: tuple[str, ...]
    channel_names: tuple[str, ...]

    # Protocols with a fixed structure: (max rounds, min rounds, verifier_first or None).
    fixed_rounds: ClassVar[tuple[int, int, bool | None] | None] = None

    def __init__(self, params: ProtocolConfig):
        self.params = params
        if self.fixed_rounds is not None:
            max_rounds, min_rounds, verifier_first = self.fixed_rounds
            require_rounds(
                params, max_rounds=max_rounds, min_rounds=min_rounds, verifier_first=verifier_first
            )

    # -- structure -----------------------------------------------------------------------
    @property
    def num_agents(self) -> int:
        """Number of agents ``A``."""
        return len(self.agent_names)

    @property
    def num_channels(self) -> int:
        """Number of message channels ``C``."""
        return len(self.channel_names)

    @property
    def prover_names(self) -> tuple[str, ...]:
        """Agents whose name contains ``prover``."""
        return tuple(a for a in self.agent_names if "prover" in a)

    @property
    def verifier_names(self) -> tuple[str, ...]:
        """Agents whose name contains ``verifier``."""
        return tuple(a for a in self.agent_names if "verifier" in a)

    @property
    def verifier_index(self) -> int:
        """Index of the (main) verifier, whose decision ends the episode."""
        return self.agent_names.index("verifier")

    def is_verifier(self, agent_name: str) -> bool:
        """Whether the agent is a verifier."""
        return agent_name in self.verifier_names

    def has_decider(self, agent_name: str) -> bool:
        """Whether the agent has a decision head (and a verifier's architecture)."""
        return self.is_verifier(agent_name)

    @property
    def max_message_rounds(self) -> int:
        """Rounds ``T`` after which an undecided episode is terminated."""
        return self.params.max_message_rounds

    @property
    def min_message_rounds(self) -> int:
        """Decisions before round ``min_message_rounds - 1`` count as continue."""
        return self.params.min_message_rounds

    @property
    def agent_channel_visibility(self) -> Tensor:
        """bool ``[agent, channel]``: which channels each agent sees (default: all of them)."""
        return torch.ones(self.num_agents, self.num_channels, dtype=torch.bool)

    @abstractmethod
    def active_mask(self, round: Tensor, seed: Tensor) -> Tensor:
        """bool ``[..., agent, channel]``: who sends a message in which channel this round.

        Parameters
        ----------
        round : Tensor
            long ``[...]``, the current round.
        seed : Tensor
            long ``[...]``, the per-episode seed (for protocols with random turn order).
        """

    def guess_mask(self, round: Tensor, seed: Tensor) -> Tensor:
        """bool ``[...]``: the verifier is active this round, so its decision counts."""
        return self.active_mask(round, seed)[..., self.verifier_index, :].any(-1)

    def decision_window(self, round: Tensor) -> Tensor:
        """bool ``[...]``: a verifier's decision in this round can end its part of the game.

        Before round ``min_message_rounds - 1`` a guess counts as "continue".
        """
        return round >= self.min_message_rounds - 1

    def decision_mask(self, round: Tensor, seed: Tensor) -> Tensor:
        """bool ``[..., agent]``: whose sampled decision reaches the environment this round.

        The main verifier's, in rounds where it is active and inside the decision window.
        """
        mask = torch.zeros((*round.shape, self.num_agents), dtype=torch.bool, device=round.device)
        mask[..., self.verifier_index] = self.guess_mask(round, seed) & self.decision_window(round)
        return mask

    def turn_masks(self, round: Tensor, seed: Tensor, agent_done: Tensor) -> tuple[Tensor, Tensor]:
        """Which of the actions sampled for ``round`` can have an effect.

        Parameters
        ----------
        round, seed : Tensor
            long ``[...]``.
        agent_done : Tensor
            bool ``[..., agent]``: agents that have finished (they act no more).

        Returns
        -------
        node_active : Tensor
            bool ``[..., agent, channel]``: the agent's message there will be read. A message
            sent in the last round never is: the episode ends with it.
        decision_active : Tensor
            bool ``[..., agent]``: the agent's decision can end its part of the game.
        """
        readable = (round < self.max_message_rounds - 1)[..., None, None]
        node_active = self.active_mask(round, seed) & readable & ~agent_done[..., None]
        decision_active = self.decision_mask(round, seed) & ~agent_done
        return node_active, decision_active

    # -- step rules ----------------------------------------------------------------------
    def step(
        self,
        *,
        round: Tensor,
        seed: Tensor,
        decision: Tensor,
        y: Tensor,
        done: Tensor,
        agent_done: Tensor,
        terminated: Tensor,
        node_logits: Tensor | None = None,
        decision_logits: Tensor | None = None,
    ) -> ProtocolStep:
        """Apply the single-verifier step rules to the current (pre-increment) round.

        All arguments are elementwise over arbitrary leading dims ``[...]``.

        Parameters
        ----------
        round, seed : Tensor
            long ``[...]``.
        decision : Tensor
            long ``[..., agent]``: 0 reject, 1 accept, 2 continue (only verifiers' count).
        y : Tensor
            long ``[...]``: the label: 1 if the right decision is accept.
        done, terminated : Tensor
            bool ``[...]``: incoming flags.
        agent_done : Tensor
            bool ``[..., agent]``: incoming per-agent flags.
        node_logits, decision_logits : Tensor, optional
            float ``[..., agent, channel, position, 2N]`` and ``[..., agent, 3]``: the policy's
            logits, for protocols whose rewards depend on them (zero knowledge).
        """
        p = self.params
        d = decision[..., self.verifier_index].long()
        if p.force_guess == "zero":
            d = torch.zeros_like(d)
        elif p.force_guess == "one":
            d = torch.ones_like(d)
        elif p.force_guess == "y":
            d = y.long()
        guess_mask = self.guess_mask(round, seed)
        decided = guess_mask & (d != CONTINUE) & self.decision_window(round)
        shared_done = done | decided
        correct = d == y
        zero = torch.zeros(round.shape, dtype=torch.float32, device=round.device)
        r_v = torch.where(
            decided,
            torch.where(correct, p.verifier_reward, p.verifier_incorrect_penalty),
            zero,
        )
        new_terminated = (round >= self.max_message_rounds - 1) & ~decided
        terminated = terminated | new_terminated
        r_v = torch.where(new_terminated, p.verifier_terminated_penalty, r_v)
        r_v = torch.where(guess_mask & ~shared_done & ~terminated, p.verifier_no_guess_reward, r_v)
        reward = self.prover_rewards(r_v, decided, d)
        agent_done = agent_done | shared_done.unsqueeze(-1)
        verifier_decision = torch.where(decided, d, torch.full_like(d, CONTINUE))
        return ProtocolStep(shared_done, agent_done, terminated, reward, verifier_decision)

    def prover_rewards(self, verifier_reward: Tensor, decided: Tensor, decision: Tensor) -> Tensor:
        """float ``[..., agent]``: every agent's reward given the verifier's.

        By default (not ``shared_reward``) each prover argues for one side: with one prover it
        wants "accept"; with two, prover 0 wants "reject" and prover 1 "accept".
        """
        p = self.params
        reward = torch.zeros(
            (*verifier_reward.shape, self.num_agents), device=verifier_reward.device
        )
        reward[..., self.verifier_index] = verifier_reward
        provers = [self.agent_names.index(name) for name in self.prover_names]
        if p.shared_reward:
            for i in provers:
                reward[..., i] = verifier_reward
            return reward
        if len(provers) > 2:
            raise ValueError("default prover rewards are defined for at most two provers")
        stances = [[], [ACCEPT], [REJECT, ACCEPT]][len(provers)]
        for i, stance in zip(provers, stances, strict=True):
            reward[..., i] = p.prover_reward * (decided & (decision == stance)).float()
        return reward


class DeterministicProtocolHandler(ProtocolHandler):
    """A protocol whose turn order depends only on the round, via a precomputed table."""

    @abstractmethod
    def is_agent_active(self, agent_name: str, round: int, channel_name: str) -> bool:
        """Whether the agent sends a message in the channel in this round."""

    def _active_table(self, device: torch.device) -> Tensor:
        """bool ``[round, agent, channel]``, built once per device."""
        cache = self.__dict__.setdefault("_active_tables", {})
        if device not in cache:
            table = torch.tensor(
                [
                    [
                        [self.is_agent_active(a, r, c) for c in self.channel_names]
                        for a in self.agent_names
                    ]
                    for r in range(self.max_message_rounds)
                ],
                dtype=torch.bool,
            )
            if (table & ~self.agent_channel_visibility).any():
                raise ValueError(f"{type(self).__name__}: an agent is active in a hidden channel")
            cache[device] = table.to(device)
        return cache[device]

    def active_mask(self, round: Tensor, seed: Tensor) -> Tensor:  # noqa: D102
        table = self._active_table(round.device)
        return table[round.clamp(0, self.max_message_rounds - 1)]


def require_rounds(
    params: ProtocolConfig,
    *,
    max_rounds: int,
    min_rounds: int,
    verifier_first: bool | None = None,
) -> None:
    """Check the round settings of a protocol with a fixed structure.

    Raises
    ------
    NipConfigError
        Naming the protocol and the settings it needs.
    """
    ok = params.max_message_rounds == max_rounds and params.min_message_rounds == min_rounds
    if verifier_first is not None:
        ok = ok and params.verifier_first == verifier_first
    if not ok:
        needed = (
            f"protocol.max_message_rounds={max_rounds} protocol.min_message_rounds={min_rounds}"
        )
        if verifier_first is not None:
            needed += f" protocol.verifier_first={str(verifier_first).lower()}"
        raise NipConfigError(f"protocol {params.name} has a fixed structure: it needs {needed}")


def build_protocol_handler(params: ProtocolConfig) -> ProtocolHandler:
    """Instantiate the handler registered under ``params.name`` (zero-knowledge if asked)."""
    handler = PROTOCOL_REGISTRY.get_class(params.name)(params)
    if params.zero_knowledge:
        from nip.protocols.zero_knowledge import ZeroKnowledgeProtocol

        if handler.verifier_names != ("verifier",):
            raise NipConfigError(
                f"protocol.zero_knowledge needs a single-verifier protocol; {params.name} is not"
            )
        handler = ZeroKnowledgeProtocol(handler)
    return handler
