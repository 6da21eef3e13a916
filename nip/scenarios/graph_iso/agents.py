"""Graph-isomorphism agents: GIN + transformer bodies, policy and value heads.

Each agent has a body mapping its view of the observation to graph- and node-level
representations, a policy head (node logits, plus decision logits for verifiers) and a value
head. :class:`CombinedPolicy` and :class:`CombinedValue` run all agents and stack their outputs
along an agent dimension, which is what the TorchRL side sees.

Shape letters: ``T`` max message rounds, ``C`` channels (``Cv`` those an agent sees), ``P``
message size (positions), ``N`` max nodes per graph, ``A`` agents, ``d`` representation width.
Leading batch dims ``*B`` are arbitrary; they are flattened internally.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nip.protocols.base import ProtocolHandler
from nip.scenarios.base import agent_config
from nip.scenarios.graph_iso.config import GraphIsoAgentConfig, GraphIsoScenarioConfig
from nip.utils.nn import (
    MASKED_LOGIT,
    NEG_INF,
    TransformerEncoderLayer,
    activation_module,
    mlp,
    orthogonal_init_,
)
from nip.utils.seeding import derive_seed


# ------------------------------------------------------------------------------------------
# Body
# ------------------------------------------------------------------------------------------
class DenseGIN(nn.Module):
    """A stack of dense GIN layers on a batch of graphs.

    ``Linear(d_in -> d_gnn)``, then per layer ``h = MLP((A + I) @ act(h))`` (GIN with eps = 0;
    MLP = Linear-act-Linear), and finally ``h * node_mask``.

    The reference masks after every layer. Here the adjacency must have no edges at
    non-existent nodes (the caller masks it), so padding rows never mix into existing nodes
    and one final mask gives the same result with fewer ops.

    Parameters
    ----------
    d_in, d_gnn, d_gin_mlp : int
        Input width, GNN width and the hidden width of each GIN MLP.
    num_layers : int
        Number of GIN layers.
    activation : str
        Activation name.
    """

    def __init__(self, d_in: int, d_gnn: int, d_gin_mlp: int, num_layers: int, activation: str):
        super().__init__()
        self.input = nn.Linear(d_in, d_gnn)
        self.act = activation_module(activation)
        self.layers = nn.ModuleList(
            mlp(d_gnn, d_gin_mlp, d_gnn, 2, activation) for _ in range(num_layers)
        )

    def forward(self, h: Tensor, adj_hat: Tensor, node_mask: Tensor) -> Tensor:
        """Run the GNN.

        Parameters
        ----------
        h : Tensor
            float ``[G, N, S, d_in]``: ``G`` graphs (batch and graph dims folded together),
            ``S`` feature streams that share the weights but are propagated independently.
        adj_hat : Tensor
            float ``[G, N, N]``: adjacency plus identity, with no edges at non-existent nodes.
        node_mask : Tensor
            float ``[G, N, 1, 1]``.

        Returns
        -------
        Tensor
            float ``[G, N, S, d_gnn]``, zero at non-existent nodes.
        """
        g, n, s, _ = h.shape
        h = self.input(h)
        for layer in self.layers:
            # One bmm aggregates every stream: streams and features share the last dim.
            agg = torch.bmm(adj_hat, self.act(h).reshape(g, n, -1)).view(g, n, s, -1)
            h = layer(agg)
        return h * node_mask


def graph_pair_attention_allowed(max_nodes: int, device: torch.device | None = None) -> Tensor:
    """Structural attention mask of the token sequence ``[pooled0, pooled1, A nodes, B nodes]``.

    Nodes may not attend to nodes of their own graph (themselves included); everything else
    is allowed. Padding (non-existent nodes) is handled separately, per sample.

    Returns
    -------
    Tensor
        bool ``[2 + 2N, 2 + 2N]`` (query, key): True where attention is allowed.
    """
    n = max_nodes
    graph_of = torch.cat([torch.full((2,), -1), torch.arange(2).repeat_interleave(n)]).to(device)
    same_graph = (graph_of[:, None] == graph_of[None, :]) & (graph_of[:, None] >= 0)
    return ~same_graph


def graph_pair_attention_bias(structural: Tensor, node_mask: Tensor) -> Tensor:
    """Additive attention bias combining the structural mask and the per-sample padding.

    Parameters
    ----------
    structural : Tensor
        bool ``[L, L]`` from :func:`graph_pair_attention_allowed`, ``L = 2 + 2N``.
    node_mask : Tensor
        bool ``[B, 2, N]``.

    Returns
    -------
    Tensor
        float ``[B, 1, L, L]``: 0 where allowed, ``NEG_INF`` where forbidden (the size-1 dim
        broadcasts over heads). Pooled tokens always exist, so no query row is fully masked.
    """
    b = node_mask.shape[0]
    key_exists = torch.cat([node_mask.new_ones(b, 2), node_mask.reshape(b, -1)], dim=1)
    allowed = structural & key_exists[:, None, :]
    bias = torch.zeros(allowed.shape, dtype=torch.float32, device=node_mask.device)
    return bias.masked_fill_(~allowed, NEG_INF).unsqueeze(1)


class GraphIsoAgentBody(nn.Module):
    """One agent's body: GIN over both graphs, pooling, and a transformer over the pair.

    Parameters
    ----------
    cfg : GraphIsoAgentConfig
        Architecture.
    d_representation : int
        Output width ``d``.
    max_message_rounds : int
        ``T``.
    num_visible_channels : int
        ``Cv``: channels this agent sees.
    message_size : int
        ``P``.
    max_nodes : int
        ``N``.
    """

    def __init__(
        self,
        cfg: GraphIsoAgentConfig,
        *,
        d_representation: int,
        max_message_rounds: int,
        num_visible_channels: int,
        message_size: int,
        max_nodes: int,
    ):
        super().__init__()
        self.max_nodes = max_nodes
        self.num_streams = 2 if cfg.use_dual_gnn else 1
        self.num_message_features = num_visible_channels * message_size
        self.use_pair_invariant_pooling = cfg.use_pair_invariant_pooling
        d_in = max_message_rounds * self.num_message_features
        self.gnn = DenseGIN(d_in, cfg.d_gnn, cfg.d_gin_mlp, cfg.num_gnn_layers, cfg.activation)
        d_gnn_out = self.num_streams * cfg.d_gnn
        self.token_encoder = nn.Linear(d_gnn_out + 2 + self.num_message_features, cfg.d_transformer)
        self.transformer = nn.ModuleList(
            TransformerEncoderLayer(cfg.d_transformer, cfg.num_heads, cfg.d_transformer_mlp)
            for _ in range(cfg.num_transformer_layers)
        )
        self.representation_encoder = nn.Linear(cfg.d_transformer, d_representation)
        self.register_buffer(
            "attention_allowed", graph_pair_attention_allowed(max_nodes), persistent=False
        )
        # [2, 2] one-hot "which pooled token" features, as a buffer so it follows .to().
        self.register_buffer("pooled_one_hot", torch.eye(2), persistent=False)

    def forward(
        self,
        x: Tensor,
        message: Tensor,
        adjacency: Tensor,
        node_mask: Tensor,
        round: Tensor,
        *,
        need_nodes: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        """Compute the representations.

        Parameters
        ----------
        x : Tensor
            float ``[*B, T, Cv, P, 2, N]``: normalised message history (visible channels).
        message : Tensor
            float ``[*B, Cv, P, 2, N]``: previous round's normalised message.
        adjacency : Tensor
            bool (or numeric) ``[*B, 2, N, N]``.
        node_mask : Tensor
            bool ``[*B, 2, N]``.
        round : Tensor
            long ``[*B]``.
        need_nodes : bool
            Compute ``node_repr``. Without it (value heads only read ``graph_repr``) the last
            transformer layer runs only for the two pooled tokens, which gives the same
            ``graph_repr`` for a fraction of the cost.

        Returns
        -------
        graph_repr : Tensor
            float ``[*B, 2, d]``.
        node_repr : Tensor or None
            float ``[*B, 2, N, d]``; None unless ``need_nodes``.
        """
        batch_shape = round.shape
        n = self.max_nodes
        s = self.num_streams
        f = self.num_message_features
        x = x.reshape(-1, x.shape[-5] * f, 2, n)  # [B, T*Cv*P, 2, N]
        b = x.shape[0]
        node_mask = node_mask.reshape(b, 2, n)

        # 1-3. Node features [B*2, N, S, T*Cv*P] through the GNN; the optional second stream
        # is all zeros (it sees only the graph structure).
        h = x.permute(0, 2, 3, 1).reshape(b * 2, n, 1, -1)
        if s == 2:
            h = torch.cat([h, torch.zeros_like(h)], dim=2)
        # Drop any edge at a non-existent node so that padding stays out of real nodes.
        edge_ok = node_mask.unsqueeze(-1) & node_mask.unsqueeze(-2)
        adj = (adjacency.reshape(b, 2, n, n) != 0) & edge_ok
        adj_hat = adj.reshape(b * 2, n, n).float() + torch.eye(n, device=x.device)
        mask_f = node_mask.reshape(b * 2, n, 1, 1).float()
        h = self.gnn(h, adj_hat, mask_f).view(b, 2, n, -1)  # [B, 2, N, S*d_gnn]

        # 5. Sum-pool each graph to one token; optionally make the pair order-invariant.
        pooled = h.sum(dim=2)  # [B, 2, D]
        if self.use_pair_invariant_pooling:
            a, c = pooled.unbind(1)
            pooled = torch.stack([(a + c) * 0.5, (a - c).abs() * 0.5], dim=1)

        # 6. Token features [gnn | pooled one-hot | message value of the node].
        msg = message.reshape(b, f, 2 * n).transpose(1, 2)  # [B, 2N, Cv*P]
        msg = msg * (round.reshape(b, 1, 1) != 0)  # no message before round 1
        pooled_tok = torch.cat(
            [pooled, self.pooled_one_hot.expand(b, 2, 2), pooled.new_zeros(b, 2, f)], dim=2
        )
        node_tok = torch.cat([h.view(b, 2 * n, -1), msg.new_zeros(b, 2 * n, 2), msg], dim=2)
        tokens = self.token_encoder(torch.cat([pooled_tok, node_tok], dim=1))  # [B, L, d_t]

        # 7. Transformer over [pooled0, pooled1, nodes A, nodes B].
        if self.transformer:
            bias = graph_pair_attention_bias(self.attention_allowed, node_mask)
            last = len(self.transformer) - 1
            for i, layer in enumerate(self.transformer):
                tokens = layer(tokens, bias, None if need_nodes or i < last else 2)
        if not need_nodes:
            tokens = tokens[:, :2]

        # 8. Final projection and split.
        out = self.representation_encoder(tokens)
        d = out.shape[-1]
        graph_repr = out[:, :2].reshape(*batch_shape, 2, d)
        if not need_nodes:
            return graph_repr, None
        node_repr = out[:, 2:].reshape(*batch_shape, 2, n, d)
        return graph_repr, node_repr


# ------------------------------------------------------------------------------------------
# Heads
# ------------------------------------------------------------------------------------------
def _graph_level_input(
    graph_repr: Tensor, round: Tensor, include_round: bool, num_round_classes: int
) -> Tensor:
    """``[*B, 2d (+ T+1)]``: both graph representations, optionally with a round one-hot."""
    flat = graph_repr.flatten(-2)
    if not include_round:
        return flat
    one_hot = F.one_hot(round, num_round_classes).to(flat.dtype)
    return torch.cat([flat, one_hot], dim=-1)


class GraphIsoPolicyHead(nn.Module):
    """Node selector (all agents) and decider (verifiers only).

    Parameters
    ----------
    cfg : GraphIsoAgentConfig
        Architecture.
    is_verifier : bool
        Whether the agent has a decider.
    d_representation, max_message_rounds, num_visible_channels, message_size, max_nodes : int
        ``d``, ``T``, ``Cv``, ``P``, ``N``.
    """

    def __init__(
        self,
        cfg: GraphIsoAgentConfig,
        *,
        is_verifier: bool,
        d_representation: int,
        max_message_rounds: int,
        num_visible_channels: int,
        message_size: int,
        max_nodes: int,
    ):
        super().__init__()
        self.num_visible_channels = num_visible_channels
        self.message_size = message_size
        self.max_nodes = max_nodes
        self.num_round_classes = max_message_rounds + 1
        self.include_round = cfg.include_round_in_decider
        self.node_selector = mlp(
            d_representation,
            cfg.d_node_selector,
            num_visible_channels * message_size,
            cfg.num_node_selector_layers,
            cfg.activation,
        )
        self.decider: nn.Module | None = None
        if is_verifier:
            d_in = 2 * d_representation + (self.num_round_classes if self.include_round else 0)
            self.decider = mlp(d_in, cfg.d_decider, 3, cfg.num_decider_layers, cfg.activation)

    def forward(
        self, graph_repr: Tensor, node_repr: Tensor, round: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Compute logits.

        Parameters
        ----------
        graph_repr : Tensor
            float ``[*B, 2, d]``.
        node_repr : Tensor
            float ``[*B, 2, N, d]``.
        round : Tensor
            long ``[*B]``.

        Returns
        -------
        node_logits : Tensor
            float ``[*B, Cv, P, 2N]``; index ``k`` is node ``k % N`` of graph ``k // N``.
        decision_logits : Tensor
            float ``[*B, 3]`` (reject, accept, continue); zeros for non-verifiers.
        """
        batch_shape = round.shape
        per_node = self.node_selector(node_repr)  # [*B, 2, N, Cv*P]
        node_logits = per_node.flatten(-3, -2).transpose(-1, -2)  # [*B, Cv*P, 2N]
        node_logits = node_logits.reshape(
            *batch_shape, self.num_visible_channels, self.message_size, 2 * self.max_nodes
        )
        if self.decider is None:
            decision_logits = graph_repr.new_zeros(*batch_shape, 3)
        else:
            inp = _graph_level_input(graph_repr, round, self.include_round, self.num_round_classes)
            decision_logits = self.decider(inp)
        return node_logits, decision_logits


class GraphIsoValueHead(nn.Module):
    """Graph-level MLP giving a scalar value.

    Parameters
    ----------
    cfg : GraphIsoAgentConfig
        Architecture.
    d_representation, max_message_rounds : int
        ``d``, ``T``.
    """

    def __init__(self, cfg: GraphIsoAgentConfig, *, d_representation: int, max_message_rounds: int):
        super().__init__()
        self.num_round_classes = max_message_rounds + 1
        self.include_round = cfg.include_round_in_value
        d_in = 2 * d_representation + (self.num_round_classes if self.include_round else 0)
        self.mlp = mlp(d_in, cfg.d_value, 1, cfg.num_value_layers, cfg.activation)

    def forward(self, graph_repr: Tensor, round: Tensor) -> Tensor:
        """``graph_repr`` float ``[*B, 2, d]``, ``round`` long ``[*B]`` -> value float ``[*B]``."""
        inp = _graph_level_input(graph_repr, round, self.include_round, self.num_round_classes)
        return self.mlp(inp).squeeze(-1)


# ------------------------------------------------------------------------------------------
# Combined multi-agent modules
# ------------------------------------------------------------------------------------------
@contextmanager
def _seeded(seed: int, *names: object) -> Iterator[None]:
    """Run the block in a forked RNG seeded with ``derive_seed(seed, *names)``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, *names))
        yield


def _visible_channels(protocol_handler: ProtocolHandler) -> list[list[int]]:
    vis = protocol_handler.agent_channel_visibility
    return [torch.nonzero(vis[a]).flatten().tolist() for a in range(protocol_handler.num_agents)]


def build_bodies(
    protocol_handler: ProtocolHandler,
    scenario_cfg: GraphIsoScenarioConfig,
    max_nodes: int,
    seed: int,
    role: str,
) -> nn.ModuleDict:
    """One orthogonally initialised body per agent.

    Agent ``name``'s parameters are drawn from ``derive_seed(seed, name, role)`` in a forked
    RNG, so they do not depend on construction order, the global RNG, or the process.

    Parameters
    ----------
    protocol_handler : ProtocolHandler
        Gives agent names and channel visibility.
    scenario_cfg : GraphIsoScenarioConfig
        Architectures and sizes.
    max_nodes : int
        ``N``.
    seed : int
        Experiment seed.
    role : str
        ``"actor"`` or ``"critic"`` (any name; it only enters the seed).

    Returns
    -------
    nn.ModuleDict
        Body by agent name (random agents have none).
    """
    bodies = nn.ModuleDict()
    for name, vis in zip(
        protocol_handler.agent_names, _visible_channels(protocol_handler), strict=True
    ):
        if agent_config(protocol_handler, scenario_cfg, name).random:
            continue  # a random agent has no network
        with _seeded(seed, name, role):
            body = GraphIsoAgentBody(
                agent_config(protocol_handler, scenario_cfg, name),
                d_representation=scenario_cfg.d_representation,
                max_message_rounds=protocol_handler.max_message_rounds,
                num_visible_channels=len(vis),
                message_size=scenario_cfg.message_size,
                max_nodes=max_nodes,
            )
            orthogonal_init_(body)
        bodies[name] = body
    return bodies


class _CombinedBase(nn.Module):
    """Shared plumbing: per-agent visible channel indices and running a body on its view."""

    def __init__(self, protocol_handler: ProtocolHandler, bodies: nn.ModuleDict):
        super().__init__()
        self.protocol_handler = protocol_handler
        self.agent_names = tuple(protocol_handler.agent_names)
        self.num_channels = protocol_handler.num_channels
        self.bodies = bodies
        self._all_visible: list[bool] = []
        for a, vis in enumerate(_visible_channels(protocol_handler)):
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
        self, a: int, x, message, adjacency, node_mask, round, need_nodes: bool
    ) -> tuple[Tensor, Tensor | None]:
        body = self.bodies[self.agent_names[a]]
        # Flat batch: channel dim is 2 in x [B, T, C, P, 2, N] and 1 in message [B, C, P, 2, N].
        return body(
            self._select_channels(a, x, 2),
            self._select_channels(a, message, 1),
            adjacency,
            node_mask,
            round,
            need_nodes=need_nodes,
        )


class CombinedPolicy(_CombinedBase):
    """All agents' policies, stacked along an agent dimension.

    Parameters
    ----------
    protocol_handler : ProtocolHandler
        Agents, channels, visibility and turn order.
    scenario_cfg : GraphIsoScenarioConfig
        Architectures and sizes.
    max_nodes : int
        ``N``.
    bodies : nn.ModuleDict
        Body by agent name (see :func:`build_bodies`); may be shared with a
        :class:`CombinedValue`.
    seed : int
        Experiment seed; head ``name`` is initialised from ``derive_seed(seed, name,
        "policy_head")``.
    """

    def __init__(
        self,
        protocol_handler: ProtocolHandler,
        scenario_cfg: GraphIsoScenarioConfig,
        max_nodes: int,
        bodies: nn.ModuleDict,
        *,
        seed: int = 0,
    ):
        super().__init__(protocol_handler, bodies)
        self.max_nodes = max_nodes
        self.message_size = scenario_cfg.message_size
        self.verifier_index = protocol_handler.verifier_index
        self.is_prover = [n in protocol_handler.prover_names for n in self.agent_names]
        self.is_random = [
            agent_config(protocol_handler, scenario_cfg, n).random for n in self.agent_names
        ]
        self.heads = nn.ModuleDict()
        for a, name in enumerate(self.agent_names):
            if self.is_random[a]:
                continue
            with _seeded(seed, name, "policy_head"):
                head = GraphIsoPolicyHead(
                    agent_config(protocol_handler, scenario_cfg, name),
                    is_verifier=protocol_handler.has_decider(name),
                    d_representation=scenario_cfg.d_representation,
                    max_message_rounds=protocol_handler.max_message_rounds,
                    num_visible_channels=len(self._vis_index(a)),
                    message_size=scenario_cfg.message_size,
                    max_nodes=max_nodes,
                )
                orthogonal_init_(head)
            self.heads[name] = head

    def _allowed_nodes(
        self, a: int, message_history: Tensor, node_mask: Tensor, round: Tensor
    ) -> Tensor:
        """bool ``[B, Cv, 2N]``: nodes agent ``a`` may select in each visible channel.

        Everyone is restricted to existing nodes. In each channel, a prover must answer in
        the graph opposite to the one holding that channel's most recent message: graph B
        if the latest non-empty round of the channel has any mass in graph A, else graph A
        (also when the channel is still empty). The latest non-empty round, not simply the
        previous round: with sequential debate or MNIP the previous round belongs to the
        other prover, who wrote in its own channel. Channels are separate conversations
        (e.g. with the verifier and with the adversarial verifier under zero knowledge), so
        each gets its own rule.
        """
        b = round.shape[0]
        num_visible = len(self._vis_index(a))
        flat_mask = node_mask.reshape(b, 1, -1)
        if not self.is_prover[a]:
            return flat_mask.expand(b, num_visible, flat_mask.shape[-1])
        history = self._select_channels(a, message_history, 2)  # [B, T, Cv, P, 2, N]
        per_graph = history.sum(dim=(3, 5))  # [B, T, Cv, 2]
        steps = torch.arange(history.shape[1], device=round.device)
        earlier = (steps[None, :] < round[:, None])[..., None]  # [B, T, 1]
        nonempty = (per_graph.sum(-1) != 0) & earlier  # [B, T, Cv]
        latest = torch.where(nonempty, steps[None, :, None], -1).amax(1)  # [B, Cv]
        mass_a = per_graph[..., 0].gather(1, latest.clamp(min=0)[:, None]).squeeze(1)  # [B, Cv]
        pick_b = (latest >= 0) & (mass_a > 0)
        graph_ok = torch.stack([~pick_b, pick_b], dim=-1)  # [B, Cv, 2]
        return (graph_ok.unsqueeze(-1) & node_mask.unsqueeze(1)).reshape(b, num_visible, -1)

    def forward(
        self,
        x: Tensor,
        message: Tensor,
        message_history: Tensor,
        adjacency: Tensor,
        node_mask: Tensor,
        round: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Run every agent's policy.

        Which of the sampled actions reach the environment is the environment's business (it
        publishes ``("agents", "node_active")`` and ``("agents", "decision_active")``).

        Parameters
        ----------
        x : Tensor
            float ``[*B, T, C, P, 2, N]``: normalised message history.
        message : Tensor
            float ``[*B, C, P, 2, N]``: previous round's normalised message.
        message_history : Tensor
            float ``[*B, T, C, P, 2, N]``: raw one-hot message history.
        adjacency : Tensor
            bool ``[*B, 2, N, N]``.
        node_mask : Tensor
            bool ``[*B, 2, N]``.
        round : Tensor
            long ``[*B]``.

        Returns
        -------
        main_message_logits : Tensor
            float ``[*B, A, C, P, 2N]``; ``MASKED_LOGIT`` for invisible channels, non-existent
            nodes and (provers) the graph they may not answer in.
        decision_logits : Tensor
            float ``[*B, A, 3]``; zeros for agents without a decider.
        """
        batch_shape = round.shape
        n = self.max_nodes
        t, c, p = x.shape[-5:-2]
        x = x.reshape(-1, t, c, p, 2, n)
        b = x.shape[0]
        message = message.reshape(b, c, p, 2, n)
        message_history = message_history.reshape(b, t, c, p, 2, n)
        adjacency = adjacency.reshape(b, 2, n, n)
        node_mask = node_mask.reshape(b, 2, n)
        flat_round = round.reshape(b)

        node_logits, decision_logits = [], []
        for a in range(len(self.agent_names)):
            if self.is_random[a]:
                # Equal logits: uniform over the allowed nodes once masked, and over the
                # decisions (which the environment restricts to the decision window).
                logits = x.new_zeros(b, len(self._vis_index(a)), p, 2 * n)
                decision = x.new_zeros(b, 3)
            else:
                graph_repr, node_repr = self._run_body(
                    a, x, message, adjacency, node_mask, flat_round, need_nodes=True
                )
                head = self.heads[self.agent_names[a]]
                logits, decision = head(graph_repr, node_repr, flat_round)
            allowed = self._allowed_nodes(a, message_history, node_mask, flat_round)
            logits = logits.masked_fill(~allowed[:, :, None, :], MASKED_LOGIT)
            if not self._all_visible[a]:
                full = logits.new_full((b, c, p, 2 * n), MASKED_LOGIT)
                logits = full.index_copy(1, self._vis_index(a), logits)
            node_logits.append(logits)
            decision_logits.append(decision)

        main_message_logits = torch.stack(node_logits, dim=1).reshape(
            *batch_shape, len(self.agent_names), c, p, 2 * n
        )
        decision_logits_t = torch.stack(decision_logits, dim=1).reshape(
            *batch_shape, len(self.agent_names), 3
        )
        return main_message_logits, decision_logits_t


class CombinedValue(_CombinedBase):
    """All agents' value estimates, stacked along an agent dimension.

    Parameters
    ----------
    protocol_handler : ProtocolHandler
        Agents, channels and visibility.
    scenario_cfg : GraphIsoScenarioConfig
        Architectures and sizes.
    max_nodes : int
        ``N``.
    bodies : nn.ModuleDict
        Body by agent name; the same object as the policy's for a shared body.
    seed : int
        Experiment seed; head ``name`` is initialised from ``derive_seed(seed, name,
        "value_head")``.
    """

    def __init__(
        self,
        protocol_handler: ProtocolHandler,
        scenario_cfg: GraphIsoScenarioConfig,
        max_nodes: int,
        bodies: nn.ModuleDict,
        *,
        seed: int = 0,
    ):
        super().__init__(protocol_handler, bodies)
        self.max_nodes = max_nodes
        self.value_heads = nn.ModuleDict()
        self.is_random = [
            agent_config(protocol_handler, scenario_cfg, n).random for n in self.agent_names
        ]
        for name, random in zip(self.agent_names, self.is_random, strict=True):
            if random:
                continue  # no critic: its value is 0 (it does not learn from advantages)
            with _seeded(seed, name, "value_head"):
                head = GraphIsoValueHead(
                    agent_config(protocol_handler, scenario_cfg, name),
                    d_representation=scenario_cfg.d_representation,
                    max_message_rounds=protocol_handler.max_message_rounds,
                )
                orthogonal_init_(head)
            self.value_heads[name] = head

    def forward(
        self, x: Tensor, message: Tensor, adjacency: Tensor, node_mask: Tensor, round: Tensor
    ) -> Tensor:
        """Run every agent's value head.

        Parameters
        ----------
        x : Tensor
            float ``[*B, T, C, P, 2, N]``.
        message : Tensor
            float ``[*B, C, P, 2, N]``.
        adjacency : Tensor
            bool ``[*B, 2, N, N]``.
        node_mask : Tensor
            bool ``[*B, 2, N]``.
        round : Tensor
            long ``[*B]``.

        Returns
        -------
        Tensor
            float ``[*B, A, 1]``.
        """
        batch_shape = round.shape
        n = self.max_nodes
        t, c, p = x.shape[-5:-2]
        x = x.reshape(-1, t, c, p, 2, n)
        b = x.shape[0]
        message = message.reshape(b, c, p, 2, n)
        adjacency = adjacency.reshape(b, 2, n, n)
        node_mask = node_mask.reshape(b, 2, n)
        flat_round = round.reshape(b)
        values = []
        for a, name in enumerate(self.agent_names):
            if self.is_random[a]:
                values.append(x.new_zeros(b))
                continue
            graph_repr, _ = self._run_body(
                a, x, message, adjacency, node_mask, flat_round, need_nodes=False
            )
            values.append(self.value_heads[name](graph_repr, flat_round))
        return torch.stack(values, dim=-1).reshape(*batch_shape, len(self.agent_names), 1)


def build_combined_agents(
    protocol_handler: ProtocolHandler,
    scenario_cfg: GraphIsoScenarioConfig,
    max_nodes: int,
    seed: int,
    use_shared_body: bool,
) -> tuple[CombinedPolicy, CombinedValue]:
    """Build the combined policy and value modules.

    With ``use_shared_body`` both hold the same ``ModuleDict`` of bodies (seeded with role
    ``"actor"``, so the shared body equals the unshared actor body); otherwise the policy gets
    ``"actor"`` bodies and the value ``"critic"`` bodies.
    """
    actor_bodies = build_bodies(protocol_handler, scenario_cfg, max_nodes, seed, "actor")
    if use_shared_body:
        critic_bodies = actor_bodies
    else:
        critic_bodies = build_bodies(protocol_handler, scenario_cfg, max_nodes, seed, "critic")
    policy = CombinedPolicy(protocol_handler, scenario_cfg, max_nodes, actor_bodies, seed=seed)
    value = CombinedValue(protocol_handler, scenario_cfg, max_nodes, critic_bodies, seed=seed)
    return policy, value


# ------------------------------------------------------------------------------------------
# Optimizer parameter groups
# ------------------------------------------------------------------------------------------
def parameter_groups(
    policy: CombinedPolicy,
    value: CombinedValue,
    scenario_cfg: GraphIsoScenarioConfig,
    protocol_handler: ProtocolHandler,
    base_lr: float,
) -> list[dict]:
    """Optimizer parameter groups with per-agent, per-part learning rates.

    For agent ``name`` with config ``cfg`` (prover or verifier architecture), writing
    ``ag, bd, gn`` for ``cfg.agent_lr_factor``, ``cfg.body_lr_factor``, ``cfg.gnn_lr_factor``:

    ===============  ===================================  =================================
    group            parameters                           lr / base
    ===============  ===================================  =================================
    ``actor_gnn``    ``policy.bodies[name].gnn``          ag.actor * bd.actor * gn.actor
    ``actor_body``   rest of ``policy.bodies[name]``      ag.actor * bd.actor
    ``actor_head``   ``policy.heads[name]``               ag.actor
    ``critic_gnn``   ``value.bodies[name].gnn``           ag.critic * bd.critic * gn.critic
    ``critic_body``  rest of ``value.bodies[name]``       ag.critic * bd.critic
    ``critic_head``  ``value.value_heads[name]``          ag.critic
    ===============  ===================================  =================================

    A shared body appears once, in the actor groups. Groups with lr 0 are left out and their
    parameters frozen (``requires_grad_(False)``); empty groups are left out. A ``frozen``
    agent has no groups (all its parameters are frozen), a ``random`` one no parameters.

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

    def body_parts(body: GraphIsoAgentBody) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        gnn = list(body.gnn.parameters())
        gnn_ids = {id(q) for q in gnn}
        return gnn, [q for q in body.parameters() if id(q) not in gnn_ids]

    for name in protocol_handler.agent_names:
        cfg = agent_config(protocol_handler, scenario_cfg, name)
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
        ag, bd, gn = cfg.agent_lr_factor, cfg.body_lr_factor, cfg.gnn_lr_factor
        actor_lr = base_lr * ag.actor
        critic_lr = base_lr * ag.critic
        gnn, rest = body_parts(policy.bodies[name])
        add(name, "actor_gnn", gnn, actor_lr * bd.actor * gn.actor)
        add(name, "actor_body", rest, actor_lr * bd.actor)
        add(name, "actor_head", list(policy.heads[name].parameters()), actor_lr)
        # A shared body's parameters were already placed; `add` skips them.
        gnn, rest = body_parts(value.bodies[name])
        add(name, "critic_gnn", gnn, critic_lr * bd.critic * gn.critic)
        add(name, "critic_body", rest, critic_lr * bd.critic)
        add(name, "critic_head", list(value.value_heads[name].parameters()), critic_lr)
    return groups
