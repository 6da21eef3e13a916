"""All agents as one module: the agent dimension every scenario's networks share.

A scenario supplies, per agent, a *body* (its view of the observation to an example-level
and an item-level representation), a *policy head* (item logits per visible channel and
position, and decision logits) and a *value head*. :class:`CombinedPolicy` and
:class:`CombinedValue` run every agent and stack the outputs along an agent dimension, which
is what the TorchRL operators see; random agents have no networks and play uniformly.

Shape letters: ``T`` rounds, ``C`` channels (``Cv`` those an agent sees), ``P`` positions,
``K`` items of an example (the product of the item shape, e.g. ``2N`` nodes), ``A`` agents.
Leading batch dims ``*B`` are arbitrary; they are flattened internally.

Interfaces the scenario's modules follow:

- ``body(x, message, *example, round, need_items=bool) -> (example_repr, item_repr | None)``
  with ``x`` ``[B, T, Cv, P, *items]`` and ``message`` ``[B, Cv, P, *items]``;
- ``policy_head(example_repr, item_repr, round) -> ([B, Cv, P, K], [B, 3])``;
- ``value_head(example_repr, round) -> [B]``.
"""

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from nip.protocols.base import ProtocolHandler
from nip.utils.nn import MASKED_LOGIT
from nip.utils.seeding import derive_seed


@contextmanager
def seeded(seed: int, *names: object) -> Iterator[None]:
    """Run the block in a forked RNG seeded with ``derive_seed(seed, *names)``.

    Networks built inside do not depend on construction order, the global RNG, or the
    process.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, *names))
        yield


def visible_channels(protocol_handler: ProtocolHandler) -> list[list[int]]:
    """Per agent, the indices of the channels it sees."""
    vis = protocol_handler.agent_channel_visibility
    return [torch.nonzero(vis[a]).flatten().tolist() for a in range(protocol_handler.num_agents)]


class CombinedAgents(nn.Module):
    """Shared plumbing: per-agent visible channel indices and running a body on its view.

    Parameters
    ----------
    protocol_handler : ProtocolHandler
        Agents, channels and visibility.
    bodies : nn.ModuleDict
        Body by agent name (random agents have none).
    item_shape : tuple of int
        The shape of an example's items (a message is ``[C, P, *item_shape]``).
    """

    def __init__(
        self, protocol_handler: ProtocolHandler, bodies: nn.ModuleDict, item_shape: tuple[int, ...]
    ):
        super().__init__()
        self.protocol_handler = protocol_handler
        self.agent_names = tuple(protocol_handler.agent_names)
        self.num_channels = protocol_handler.num_channels
        self.bodies = bodies
        self.item_shape = tuple(item_shape)
        self.num_items = math.prod(self.item_shape)
        self._all_visible: list[bool] = []
        for a, vis in enumerate(visible_channels(protocol_handler)):
            self._all_visible.append(len(vis) == self.num_channels)
            self.register_buffer(f"_vis_index_{a}", torch.tensor(vis), persistent=False)

    def _vis_index(self, a: int) -> Tensor:
        return getattr(self, f"_vis_index_{a}")

    def _select_channels(self, a: int, t: Tensor, dim: int) -> Tensor:
        """``t`` restricted to agent ``a``'s visible channels along ``dim`` (no copy if all)."""
        if self._all_visible[a]:
            return t
        return t.index_select(dim, self._vis_index(a))

    def _run_body(
        self,
        a: int,
        x: Tensor,
        message: Tensor,
        example: tuple[Tensor, ...],
        round: Tensor,
        need_items: bool,
    ) -> tuple[Tensor, Tensor | None]:
        """Agent ``a``'s body on its visible channels (flat batch: x ``[B, T, C, P, ...]``)."""
        body = self.bodies[self.agent_names[a]]
        return body(
            self._select_channels(a, x, 2),
            self._select_channels(a, message, 1),
            *example,
            round,
            need_items=need_items,
        )

    def _flatten(
        self, round: Tensor, x: Tensor, message: Tensor, others: tuple[Tensor, ...]
    ) -> tuple[int, Tensor, Tensor, tuple[Tensor, ...], Tensor]:
        """Flatten the leading batch dims of the inputs: ``(b, x, message, others, round)``."""
        batch_dims = round.dim()
        x = x.flatten(0, batch_dims - 1) if batch_dims else x[None]
        b = x.shape[0]
        message = message.reshape(b, *message.shape[batch_dims:])
        others = tuple(t.reshape(b, *t.shape[batch_dims:]) for t in others)
        return b, x, message, others, round.reshape(b)


class CombinedPolicy(CombinedAgents):
    """All agents' policies, stacked along an agent dimension.

    ``forward(x, message, message_history, *example, round)``: the scenario's
    ``policy_in_keys`` in that order.

    Parameters
    ----------
    protocol_handler : ProtocolHandler
        Agents, channels, visibility and turn order.
    bodies : nn.ModuleDict
        Body by agent name; may be shared with a :class:`CombinedValue`.
    heads : nn.ModuleDict
        Policy head by agent name (random agents have none).
    item_shape : tuple of int
        The shape of an example's items.
    message_size : int
        ``P``.
    """

    def __init__(
        self,
        protocol_handler: ProtocolHandler,
        bodies: nn.ModuleDict,
        heads: nn.ModuleDict,
        item_shape: tuple[int, ...],
        message_size: int,
    ):
        super().__init__(protocol_handler, bodies, item_shape)
        self.heads = heads
        self.message_size = message_size
        self.verifier_index = protocol_handler.verifier_index
        self.is_prover = [n in protocol_handler.prover_names for n in self.agent_names]
        self.is_random = [n not in heads for n in self.agent_names]

    def allowed_items(
        self, a: int, message_history: Tensor, example: tuple[Tensor, ...], round: Tensor
    ) -> Tensor | None:
        """bool ``[B, Cv, K]``: items agent ``a`` may point at, or ``None`` for all."""
        return None

    def forward(self, x: Tensor, message: Tensor, message_history: Tensor, *rest: Tensor):
        """Run every agent's policy.

        Which of the sampled actions reach the environment is the environment's business (it
        publishes ``("agents", "node_active")`` and ``("agents", "decision_active")``).

        Parameters
        ----------
        x : Tensor
            float ``[*B, T, C, P, *items]``: normalised message history.
        message : Tensor
            float ``[*B, C, P, *items]``: previous round's normalised message.
        message_history : Tensor
            float ``[*B, T, C, P, *items]``: raw one-hot message history.
        *rest : Tensor
            The example's observations (the scenario's keys), then ``round`` long ``[*B]``.

        Returns
        -------
        main_message_logits : Tensor
            float ``[*B, A, C, P, K]``; ``MASKED_LOGIT`` for invisible channels and items
            the agent may not point at.
        decision_logits : Tensor
            float ``[*B, A, 3]``; zeros for agents without a decider.
        """
        *example, round = rest
        batch_shape = round.shape
        b, x, message, flat, flat_round = self._flatten(
            round, x, message, (message_history, *example)
        )
        message_history, example = flat[0], flat[1:]
        t, c, p = x.shape[1:4]
        k = self.num_items
        item_logits, decision_logits = [], []
        for a in range(len(self.agent_names)):
            if self.is_random[a]:
                # Equal logits: uniform over the allowed items once masked, and over the
                # decisions (which the environment restricts to the decision window).
                logits = x.new_zeros(b, len(self._vis_index(a)), p, k)
                decision = x.new_zeros(b, 3)
            else:
                example_repr, item_repr = self._run_body(
                    a, x, message, example, flat_round, need_items=True
                )
                head = self.heads[self.agent_names[a]]
                logits, decision = head(example_repr, item_repr, flat_round)
            allowed = self.allowed_items(a, message_history, example, flat_round)
            if allowed is not None:
                logits = logits.masked_fill(~allowed[:, :, None, :], MASKED_LOGIT)
            if not self._all_visible[a]:
                full = logits.new_full((b, c, p, k), MASKED_LOGIT)
                logits = full.index_copy(1, self._vis_index(a), logits)
            item_logits.append(logits)
            decision_logits.append(decision)
        main_message_logits = torch.stack(item_logits, dim=1).reshape(
            *batch_shape, len(self.agent_names), c, p, k
        )
        decisions = torch.stack(decision_logits, dim=1).reshape(
            *batch_shape, len(self.agent_names), 3
        )
        return main_message_logits, decisions


class CombinedValue(CombinedAgents):
    """All agents' value estimates, stacked along an agent dimension.

    ``forward(x, message, *example, round)``: the scenario's ``value_in_keys`` in that order.

    Parameters
    ----------
    protocol_handler : ProtocolHandler
        Agents, channels and visibility.
    bodies : nn.ModuleDict
        Body by agent name; the same object as the policy's for a shared body.
    value_heads : nn.ModuleDict
        Value head by agent name (random agents have none: their value is 0).
    item_shape : tuple of int
        The shape of an example's items.
    """

    def __init__(
        self,
        protocol_handler: ProtocolHandler,
        bodies: nn.ModuleDict,
        value_heads: nn.ModuleDict,
        item_shape: tuple[int, ...],
    ):
        super().__init__(protocol_handler, bodies, item_shape)
        self.value_heads = value_heads
        self.is_random = [n not in value_heads for n in self.agent_names]

    def forward(self, x: Tensor, message: Tensor, *rest: Tensor) -> Tensor:
        """Every agent's value: float ``[*B, A, 1]`` (inputs as for the policy, without the
        raw message history)."""
        *example, round = rest
        batch_shape = round.shape
        b, x, message, example, flat_round = self._flatten(round, x, message, tuple(example))
        values = []
        for a, name in enumerate(self.agent_names):
            if self.is_random[a]:
                values.append(x.new_zeros(b))
                continue
            example_repr, _ = self._run_body(a, x, message, example, flat_round, need_items=False)
            values.append(self.value_heads[name](example_repr, flat_round))
        return torch.stack(values, dim=-1).reshape(*batch_shape, len(self.agent_names), 1)


# A body split into named parts, each with a learning-rate factor for a role ("actor" or
# "critic"): ``split(body, agent_cfg, role) -> [(part, params, factor), ...]``.
BodySplit = Callable[[nn.Module, Any, str], list[tuple[str, list[nn.Parameter], float]]]


def whole_body(body: nn.Module, agent_cfg: Any, role: str) -> list[tuple[str, list, float]]:
    """The default :data:`BodySplit`: the whole body as one part, ``body``, factor 1."""
    return [("body", list(body.parameters()), 1.0)]


def parameter_groups(
    policy: CombinedPolicy,
    value: CombinedValue,
    agent_configs: dict[str, Any],
    base_lr: float,
    split_body: BodySplit = whole_body,
) -> list[dict]:
    """Optimizer parameter groups with per-agent, per-part learning rates.

    For agent ``name`` with config ``cfg``, writing ``ag, bd`` for ``cfg.agent_lr_factor``
    and ``cfg.body_lr_factor``, the groups are, in this order: the parts of the policy body
    (``actor_<part>``, lr ``base * ag.actor * bd.actor * part factor``), ``actor_head``
    (``base * ag.actor``), then the same for the value network with the ``critic`` factors
    (``critic_<part>``, ``critic_head``). A shared body appears once, in the actor groups.
    Groups with lr 0 are left out and their parameters frozen (``requires_grad_(False)``);
    empty groups are left out. A ``frozen`` agent has no groups (all its parameters are
    frozen), a ``random`` one no parameters.

    Parameters
    ----------
    policy, value : CombinedPolicy, CombinedValue
        The combined agents.
    agent_configs : dict
        Agent name -> its config (with ``agent_lr_factor``, ``body_lr_factor``, ``frozen``
        and ``random``).
    base_lr : float
        ``trainer.lr``.
    split_body : BodySplit
        How a body divides into parts with their own factors (default: one part).

    Returns
    -------
    list of dict
        ``{"params": [...], "lr": float, "name": "<agent>.<group>"}``.
    """
    groups: list[dict] = []
    seen: set[int] = set()

    def add(name: str, part: str, params: list[nn.Parameter], lr: float) -> None:
        params = [q for q in params if id(q) not in seen]
        seen.update(id(q) for q in params)
        if not params:
            return
        if lr == 0:
            for q in params:
                q.requires_grad_(False)
            return
        groups.append({"params": params, "lr": float(lr), "name": f"{name}.{part}"})

    for name, cfg in agent_configs.items():
        if cfg.random:
            continue  # no parameters
        if cfg.frozen:
            # Out of the optimizer and of autograd: no gradient, no clipping share, no Adam
            # state; the parameters keep their values.
            for module in (
                policy.bodies[name],
                policy.heads[name],
                value.bodies[name],
                value.value_heads[name],
            ):
                module.requires_grad_(False)
            continue
        networks = (
            ("actor", policy.bodies[name], policy.heads[name]),
            ("critic", value.bodies[name], value.value_heads[name]),
        )
        for role, body, head in networks:
            lr = base_lr * getattr(cfg.agent_lr_factor, role)
            body_lr = lr * getattr(cfg.body_lr_factor, role)
            # A shared body's parameters were already placed; `add` skips them.
            for part, params, factor in split_body(body, cfg, role):
                add(name, f"{role}_{part}", params, body_lr * factor)
            add(name, f"{role}_head", list(head.parameters()), lr)
    return groups


class SupervisedView:
    """A dataset as the agents' bodies see it before any message (round 0), with its labels.

    What solo training and pretraining (:mod:`nip.trainers.supervised`) classify with each
    agent's body and a solo head.

    Parameters
    ----------
    policy : CombinedPolicy
        The agents whose bodies classify the examples.
    examples : tuple of Tensor
        The example observations the bodies read (the scenario's keys, in order), each
        ``[examples, ...]`` (moved to ``device`` once).
    y : Tensor
        long ``[examples]``: the labels.
    strata : dict of Tensor
        Named per-example strata for accuracy breakdowns (see ``Scenario.strata``).
    label_names : tuple of str
        Names of labels 0 and 1 in statistics (see ``Scenario.label_names``).
    agent_configs : dict
        Agent name -> its config (``body_lr_factor``; what ``make_solo_head`` reads).
    make_solo_head : callable
        ``agent config -> nn.Module`` from a body's example representation to 2 logits.
    split_body : BodySplit
        The body's parts and their learning-rate factors (as in RL).
    observation_stats : dict, optional
        ``{"x" | "message": {"loc", "scale"}}``: the RL trainer's observation normalisation,
        so that pretrained bodies see the inputs they will see in RL; without it the bodies
        see plain zeros.
    device : torch.device or str
        Where the data and the networks live.
    """

    def __init__(
        self,
        policy: CombinedPolicy,
        examples: tuple[Tensor, ...],
        y: Tensor,
        strata: dict[str, Tensor],
        label_names: tuple[str, str],
        agent_configs: dict[str, Any],
        make_solo_head: Callable[[Any], nn.Module],
        split_body: BodySplit = whole_body,
        observation_stats: dict[str, dict[str, Tensor]] | None = None,
        device: torch.device | str = "cpu",
    ):
        self.policy = policy
        self.device = torch.device(device)
        self.examples = tuple(e.to(self.device) for e in examples)
        self.y = y.to(self.device)
        self.strata = strata
        self.label_names = label_names
        self.agent_configs = agent_configs
        self.make_solo_head = make_solo_head
        self.split_body = split_body
        handler = policy.protocol_handler
        shape = (
            handler.max_message_rounds,
            handler.num_channels,
            policy.message_size,
            *policy.item_shape,
        )
        stats = observation_stats or {}
        # One normalised all-zero observation, broadcast to each batch.
        self._x = self._normalised_zeros(stats.get("x"), shape)
        self._message = self._normalised_zeros(stats.get("message"), shape[1:])

    def _normalised_zeros(self, stats: dict[str, Tensor] | None, shape: tuple[int, ...]) -> Tensor:
        zeros = torch.zeros(shape, device=self.device)
        if stats is None:
            return zeros
        return (zeros - stats["loc"].to(self.device)) / stats["scale"].to(self.device)

    def __len__(self) -> int:
        return len(self.y)

    def labels(self, idx: Tensor) -> Tensor:
        """long ``[b]``: the labels of examples ``idx``."""
        return self.y[idx]

    def solo_head(self, agent_name: str, seed: int) -> nn.Module:
        """A freshly initialised solo head, seeded by ``(seed, agent_name, "solo_head")``."""
        with seeded(seed, agent_name, "solo_head"):
            head = self.make_solo_head(self.agent_configs[agent_name])
        return head.to(self.device)

    def representation(self, agent_index: int, idx: Tensor) -> Tensor:
        """Agent ``agent_index``'s example representation of examples ``idx`` at round 0."""
        b = len(idx)
        example_repr, _ = self.policy._run_body(
            agent_index,
            self._x.expand(b, *self._x.shape),
            self._message.expand(b, *self._message.shape),
            tuple(e[idx] for e in self.examples),
            torch.zeros(b, dtype=torch.long, device=self.device),
            need_items=False,
        )
        return example_repr

    def body_parameter_groups(self, agent_name: str, lr: float, use_factors: bool) -> list[dict]:
        """Optimizer groups of an agent's policy body: its parts at ``lr *
        body_lr_factor.actor * part factor`` (as in RL, without the agent's overall factor)
        with ``use_factors``, else the whole body at ``lr``."""
        body = self.policy.bodies[agent_name]
        if not use_factors:
            return [{"params": list(body.parameters()), "lr": lr, "name": f"{agent_name}.body"}]
        cfg = self.agent_configs[agent_name]
        return [
            {
                "params": params,
                "lr": lr * cfg.body_lr_factor.actor * factor,
                "name": f"{agent_name}.{part}",
            }
            for part, params, factor in self.split_body(body, cfg, "actor")
        ]
