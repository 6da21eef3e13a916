"""Graph-isomorphism agents: GIN + transformer bodies, policy and value heads.

Each agent has a body mapping its view of the observation to graph- and node-level
representations, a policy head (node logits, plus decision logits for verifiers) and a value
head. :class:`CombinedPolicy` and :class:`CombinedValue` run all agents and stack their outputs
along an agent dimension, which is what the TorchRL side sees.

Shape letters: ``T`` max message rounds, ``C`` channels (``Cv`` those an agent sees), ``P``
message size (positions), ``N`` max nodes per graph, ``A`` agents, ``d`` representation width.
Leading batch dims ``*B`` are arbitrary; they are flattened internally.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nip.agents import CombinedPolicy as SharedCombinedPolicy
from nip.agents import CombinedValue as SharedCombinedValue
from nip.agents import seeded, visible_channels
from nip.protocols.base import ProtocolHandler
from nip.scenarios.base import agent_config
from nip.scenarios.graph_iso.config import GraphIsoAgentConfig, GraphIsoScenarioConfig
from nip.scenarios.graph_iso.layers import (
    DenseGIN,
    graph_pair_attention_allowed,
    graph_pair_attention_bias,
)
from nip.utils.nn import (
    TransformerEncoderLayer,
    mlp,
    orthogonal_init_,
)


# ------------------------------------------------------------------------------------------
# Body
# ------------------------------------------------------------------------------------------
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
        need_items: bool = True,
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
        need_items : bool
            Compute ``node_repr``. Without it (value heads only read ``graph_repr``) the last
            transformer layer runs only for the two pooled tokens, which gives the same
            ``graph_repr`` for a fraction of the cost.

        Returns
        -------
        graph_repr : Tensor
            float ``[*B, 2, d]``.
        node_repr : Tensor or None
            float ``[*B, 2, N, d]``; None unless ``need_items``.
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
                tokens = layer(tokens, bias, None if need_items or i < last else 2)
        if not need_items:
            tokens = tokens[:, :2]

        # 8. Final projection and split.
        out = self.representation_encoder(tokens)
        d = out.shape[-1]
        graph_repr = out[:, :2].reshape(*batch_shape, 2, d)
        if not need_items:
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
        protocol_handler.agent_names, visible_channels(protocol_handler), strict=True
    ):
        if agent_config(protocol_handler, scenario_cfg, name).random:
            continue  # a random agent has no network
        with seeded(seed, name, role):
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


class CombinedPolicy(SharedCombinedPolicy):
    """All GI agents' policies, stacked along an agent dimension.

    ``forward(x, message, message_history, adjacency, node_mask, round)`` (see
    :class:`nip.agents.CombinedPolicy`); item ``k`` of the ``2N`` is node ``k % N`` of graph
    ``k // N``.

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
        heads = nn.ModuleDict()
        for name, vis in zip(
            protocol_handler.agent_names, visible_channels(protocol_handler), strict=True
        ):
            cfg = agent_config(protocol_handler, scenario_cfg, name)
            if cfg.random:
                continue
            with seeded(seed, name, "policy_head"):
                head = GraphIsoPolicyHead(
                    cfg,
                    is_verifier=protocol_handler.has_decider(name),
                    d_representation=scenario_cfg.d_representation,
                    max_message_rounds=protocol_handler.max_message_rounds,
                    num_visible_channels=len(vis),
                    message_size=scenario_cfg.message_size,
                    max_nodes=max_nodes,
                )
                orthogonal_init_(head)
            heads[name] = head
        super().__init__(protocol_handler, bodies, heads, (2, max_nodes), scenario_cfg.message_size)
        self.max_nodes = max_nodes

    def allowed_items(
        self, a: int, message_history: Tensor, example: tuple[Tensor, ...], round: Tensor
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
        _, node_mask = example
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


class CombinedValue(SharedCombinedValue):
    """All GI agents' value estimates, stacked along an agent dimension.

    ``forward(x, message, adjacency, node_mask, round) -> [*B, A, 1]``.

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
        value_heads = nn.ModuleDict()
        for name in protocol_handler.agent_names:
            cfg = agent_config(protocol_handler, scenario_cfg, name)
            if cfg.random:
                continue  # no critic: its value is 0 (it does not learn from advantages)
            with seeded(seed, name, "value_head"):
                head = GraphIsoValueHead(
                    cfg,
                    d_representation=scenario_cfg.d_representation,
                    max_message_rounds=protocol_handler.max_message_rounds,
                )
                orthogonal_init_(head)
            value_heads[name] = head
        super().__init__(protocol_handler, bodies, value_heads, (2, max_nodes))
        self.max_nodes = max_nodes


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
def split_gnn(body: GraphIsoAgentBody, cfg: GraphIsoAgentConfig, role: str) -> list:
    """A GI body's parts: its GNN (factor ``gnn_lr_factor.<role>``) and the rest."""
    gnn = list(body.gnn.parameters())
    gnn_ids = {id(q) for q in gnn}
    rest = [q for q in body.parameters() if id(q) not in gnn_ids]
    return [("gnn", gnn, getattr(cfg.gnn_lr_factor, role)), ("body", rest, 1.0)]
