"""Graph-isomorphism agent networks: shapes, masks, symmetry, seeding and optimizer groups."""

import dataclasses
import hashlib
import os
import subprocess
import sys

import pytest
import torch
from torch import Tensor, nn

from nip.config.protocol import ProtocolConfig
from nip.protocols import build_protocol_handler
from nip.protocols.base import DeterministicProtocolHandler
from nip.scenarios import get_scenario
from nip.scenarios.graph_iso.agents import (
    CombinedPolicy,
    CombinedValue,
    GraphIsoAgentBody,
    build_bodies,
    build_combined_agents,
)
from nip.scenarios.graph_iso.config import GraphIsoAgentConfig, GraphIsoScenarioConfig, LrFactors
from nip.scenarios.graph_iso.layers import graph_pair_attention_allowed, graph_pair_attention_bias
from nip.utils.nn import MASKED_LOGIT, TransformerEncoderLayer, fast_tanh, mlp, orthogonal_init_

N = 6  # max nodes per graph in these tests


class TwoChannelHandler(DeterministicProtocolHandler):
    """A test protocol with two channels where the prover sees only channel ``b``."""

    agent_names = ("prover", "verifier")
    channel_names = ("a", "b")

    @property
    def agent_channel_visibility(self) -> Tensor:
        return torch.tensor([[False, True], [True, True]])

    def is_agent_active(self, agent_name: str, round: int, channel_name: str) -> bool:
        if agent_name == "verifier":
            return round % 2 == 0
        return round % 2 == 1 and channel_name == "b"


class ReversedNipHandler(DeterministicProtocolHandler):
    """NIP with the agents listed in the other order (for construction-order checks)."""

    agent_names = ("verifier", "prover")
    channel_names = ("main",)

    @property
    def agent_channel_visibility(self) -> Tensor:
        return torch.ones(2, 1, dtype=torch.bool)

    def is_agent_active(self, agent_name: str, round: int, channel_name: str) -> bool:
        return (round % 2 == 0) == (agent_name == "verifier")


def tiny_agent(**overrides) -> GraphIsoAgentConfig:
    base = GraphIsoAgentConfig(
        num_gnn_layers=1,
        d_gnn=4,
        d_gin_mlp=6,
        use_dual_gnn=True,
        num_heads=2,
        num_transformer_layers=1,
        d_transformer=4,
        d_transformer_mlp=6,
        d_node_selector=5,
        d_decider=5,
        d_value=5,
        num_node_selector_layers=1,
        num_decider_layers=1,
        num_value_layers=1,
    )
    return dataclasses.replace(base, **overrides)


def tiny_scenario(**agent_overrides) -> GraphIsoScenarioConfig:
    return GraphIsoScenarioConfig(
        d_representation=3,
        message_size=2,
        prover=tiny_agent(**agent_overrides),
        verifier=tiny_agent(**agent_overrides),
    )


PAPER = GraphIsoScenarioConfig()  # prover 5 GNN layers, verifier 2, 1 transformer layer


def nip_handler(max_message_rounds: int = 8):
    return build_protocol_handler(ProtocolConfig(max_message_rounds=max_message_rounds))


def make_obs(
    batch_shape: tuple[int, ...], handler, message_size: int, gen_seed: int = 0, round=None
) -> dict[str, Tensor]:
    """Random observations with graphs of 3..N nodes and a message history up to ``round``."""
    g = torch.Generator().manual_seed(gen_seed)
    t, c, p = handler.max_message_rounds, handler.num_channels, message_size
    sizes = torch.randint(3, N + 1, batch_shape, generator=g)
    node_mask = (torch.arange(N) < sizes[..., None, None]).expand(*batch_shape, 2, N)
    upper = (torch.rand(*batch_shape, 2, N, N, generator=g) < 0.5).triu(1)
    adjacency = (
        (upper | upper.transpose(-1, -2)) & node_mask[..., :, None] & node_mask[..., None, :]
    )
    if round is None:
        round = torch.randint(0, t, batch_shape, generator=g)
    else:
        round = torch.full(batch_shape, round, dtype=torch.long)
    node = torch.randint(0, 2 * N, (*batch_shape, t, c, p), generator=g)
    history = nn.functional.one_hot(node, 2 * N).float().view(*batch_shape, t, c, p, 2, N)
    history = history * (torch.arange(t) < round[..., None])[..., None, None, None, None]
    prev = (
        (round - 1)
        .clamp(min=0)[..., None, None, None, None, None]
        .expand_as(history[..., :1, :, :, :, :])
    )
    message = history.gather(-5, prev).squeeze(-5)
    return {
        "x": (history - 0.1) * 3.0,
        "message": (message - 0.1) * 3.0,
        "message_history": history,
        "adjacency": adjacency,
        "node_mask": node_mask.clone(),
        "round": round,
        "seed": torch.randint(0, 2**16, batch_shape, generator=g),
    }


def run_policy(policy: CombinedPolicy, obs: dict[str, Tensor]):
    keys = ("x", "message", "message_history", "adjacency", "node_mask", "round")
    return policy(*(obs[k] for k in keys))


def run_value(value: CombinedValue, obs: dict[str, Tensor]) -> Tensor:
    return value(*(obs[k] for k in ("x", "message", "adjacency", "node_mask", "round")))


# ------------------------------------------------------------------------------------------
# Shapes and masks
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_shape", [(5,), (3, 4)])
@pytest.mark.parametrize("scenario_name", ["paper", "tiny"])
def test_output_shapes(batch_shape, scenario_name):
    handler = nip_handler()
    scenario = PAPER if scenario_name == "paper" else tiny_scenario()
    policy, value = build_combined_agents(handler, scenario, N, seed=1, use_shared_body=False)
    obs = make_obs(batch_shape, handler, scenario.message_size)
    t, c, p, a = 8, 1, scenario.message_size, 2
    logits, decision = run_policy(policy, obs)
    assert logits.shape == (*batch_shape, a, c, p, 2 * N)
    assert decision.shape == (*batch_shape, a, 3)
    v = run_value(value, obs)
    assert v.shape == (*batch_shape, a, 1)
    assert torch.isfinite(logits).all() and torch.isfinite(decision).all()
    assert torch.isfinite(v).all()
    # Provers have no decider: zero logits. The verifier's are not all zero.
    assert (decision[..., 0, :] == 0).all()
    assert (decision[..., 1, :] != 0).any()

    body = policy.bodies["prover"]
    graph_repr, node_repr = body(
        obs["x"], obs["message"], obs["adjacency"], obs["node_mask"], obs["round"]
    )
    d = scenario.d_representation
    assert graph_repr.shape == (*batch_shape, 2, d)
    assert node_repr.shape == (*batch_shape, 2, N, d)
    assert (t, c, p) == tuple(obs["x"].shape[-5:-2])


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"use_dual_gnn": False, "use_pair_invariant_pooling": False, "activation": "relu"},
        {"num_transformer_layers": 0, "num_gnn_layers": 0},
        {"num_transformer_layers": 2, "num_gnn_layers": 3, "activation": "sigmoid"},
        {"include_round_in_decider": False, "include_round_in_value": False},
    ],
)
def test_config_variants_run_and_backprop(overrides):
    handler = nip_handler(4)
    scenario = tiny_scenario(**overrides)
    policy, value = build_combined_agents(handler, scenario, N, seed=2, use_shared_body=True)
    obs = make_obs((7,), handler, scenario.message_size)
    logits, decision = run_policy(policy, obs)
    v = run_value(value, obs)
    assert logits.shape == (7, 2, 1, 2, 2 * N) and v.shape == (7, 2, 1)
    (logits.clamp(min=-5).sum() + decision.sum() + v.sum()).backward()
    for p in list(policy.parameters()) + list(value.parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all()


def test_invisible_channels_and_missing_nodes_are_masked():
    handler = TwoChannelHandler(ProtocolConfig(max_message_rounds=4))
    scenario = tiny_scenario()
    policy, _ = build_combined_agents(handler, scenario, N, seed=3, use_shared_body=False)
    obs = make_obs((9,), handler, scenario.message_size)
    logits, _ = run_policy(policy, obs)
    assert logits.shape == (9, 2, 2, 2, 2 * N)
    prover, verifier = logits[:, 0], logits[:, 1]
    # The prover does not see channel a.
    assert (prover[:, 0] == MASKED_LOGIT).all()
    # Non-existent nodes are masked for everyone, in every channel and position.
    missing = ~obs["node_mask"].reshape(9, 1, 1, 1, 2 * N).expand_as(logits)
    assert (logits[missing] == MASKED_LOGIT).all()
    # The verifier sees both channels: every existing node is selectable.
    exists = obs["node_mask"].reshape(9, 1, 1, 2 * N).expand_as(verifier)
    assert (verifier[exists] > MASKED_LOGIT / 2).all()
    # The prover's visible channel has exactly one selectable graph, all its existing nodes.
    allowed = prover[:, 1] > MASKED_LOGIT / 2  # [9, P, 2N]
    per_graph = allowed.view(9, 2, 2, N).any(-1)
    assert (per_graph.sum(-1) == 1).all()


def _prover_allowed_graphs(policy, obs) -> Tensor:
    """bool ``[B, 2]``: which graphs the prover (agent 0) may pick in its last channel."""
    logits, _ = run_policy(policy, obs)
    allowed = logits[:, 0, -1, 0] > MASKED_LOGIT / 2  # [B, 2N]
    return allowed.view(-1, 2, N).any(-1)


def test_prover_answers_in_the_other_graph():
    handler = nip_handler(8)
    scenario = tiny_scenario()
    policy, _ = build_combined_agents(handler, scenario, N, seed=4, use_shared_body=False)
    obs = make_obs((4,), handler, scenario.message_size, round=0)
    assert _prover_allowed_graphs(policy, obs).tolist() == [[True, False]] * 4

    # Round 3: the last message (row 2) is in graph A for rows 0-1 and graph B for rows 2-3.
    obs = make_obs((4,), handler, scenario.message_size, round=3)
    history = torch.zeros_like(obs["message_history"])
    history[:2, 2, 0, 0, 0, 1] = 1.0
    history[2:, 2, 0, 1, 1, 0] = 1.0
    history[:, 1, 0, 0, 0, 0] = 1.0  # older rounds are ignored
    obs["message_history"] = history
    allowed = _prover_allowed_graphs(policy, obs)
    assert allowed.tolist() == [[False, True]] * 2 + [[True, False]] * 2
    # The verifier is not restricted to a graph.
    logits, _ = run_policy(policy, obs)
    exists = obs["node_mask"].reshape(4, 1, 1, 2 * N).expand_as(logits[:, 1])
    assert (logits[:, 1][exists] > MASKED_LOGIT / 2).all()


def test_prover_ignores_messages_in_channels_it_cannot_see():
    handler = TwoChannelHandler(ProtocolConfig(max_message_rounds=4))
    scenario = tiny_scenario()
    policy, _ = build_combined_agents(handler, scenario, N, seed=5, use_shared_body=False)
    obs = make_obs((2,), handler, scenario.message_size, round=1)
    history = torch.zeros_like(obs["message_history"])
    history[0, 0, 0, 0, 0, 0] = 1.0  # graph A, channel a (invisible to the prover)
    history[1, 0, 1, 1, 0, 0] = 1.0  # graph A, channel b
    obs["message_history"] = history
    assert _prover_allowed_graphs(policy, obs).tolist() == [[True, False], [False, True]]


@pytest.mark.parametrize("name", ["debate", "mnip"])
def test_second_sequential_prover_answers_the_latest_message_in_its_channel(name):
    """Sequential turns, verifier first: the verifier writes both channels in round 0,
    prover0 its channel in round 1, and prover1 answers in round 2. The latest message in
    prover1's channel is the verifier's of round 0 (round 1 there is empty), so prover1
    answers in the graph opposite to that one, graph B when it was in graph A."""
    from nip.config.protocol import MultiProverProtocolConfig

    handler = build_protocol_handler(MultiProverProtocolConfig(name=name, sequential=True))
    scenario = tiny_scenario()
    policy, _ = build_combined_agents(handler, scenario, N, seed=6, use_shared_body=False)
    obs = make_obs((2,), handler, scenario.message_size, round=2)
    history = torch.zeros_like(obs["message_history"])  # [B, T, C, P, 2, N]
    history[0, 0, :, 0, 0, 1] = 1.0  # row 0: the verifier wrote in graph A in both channels
    history[1, 0, :, 0, 1, 2] = 1.0  # row 1: ... in graph B
    history[:, 1, 0, 0, 1, 0] = 1.0  # prover0 answered in graph B in its own channel
    obs["message_history"] = history
    logits, _ = run_policy(policy, obs)
    prover1 = handler.agent_names.index("prover1")
    allowed = logits[:, prover1, 1, 0] > MASKED_LOGIT / 2  # [B, 2N] in prover1's channel
    assert allowed.view(2, 2, N).any(-1).tolist() == [[False, True], [True, False]]


# ------------------------------------------------------------------------------------------
# Symmetry and attention mask
# ------------------------------------------------------------------------------------------
def test_permutation_equivariance():
    handler = nip_handler(8)
    policy, value = build_combined_agents(handler, PAPER, N, seed=7, use_shared_body=False)
    obs = make_obs((6,), handler, PAPER.message_size, gen_seed=3)
    obs["round"] = torch.tensor([0, 1, 2, 3, 5, 7])
    min_size = int(obs["node_mask"][:, 0].sum(-1).min())
    assert min_size >= 3
    perm = torch.cat([torch.randperm(min_size, generator=torch.Generator().manual_seed(0))])
    perm = torch.cat([perm.roll(1), torch.arange(min_size, N)])  # a non-identity permutation
    assert not torch.equal(perm, torch.arange(N))

    permuted = dict(obs)
    for key in ("x", "message", "message_history"):
        t = obs[key].clone()
        t[..., 0, :] = t[..., 0, perm]
        permuted[key] = t
    adj = obs["adjacency"].clone()
    adj[:, 0] = adj[:, 0][:, perm][:, :, perm]
    permuted["adjacency"] = adj

    with torch.no_grad():
        logits, decision = run_policy(policy, obs)
        logits_p, decision_p = run_policy(policy, permuted)
        v, v_p = run_value(value, obs), run_value(value, permuted)
    tol = {"atol": 1e-4, "rtol": 1e-4}
    torch.testing.assert_close(logits_p[..., :N], logits[..., :N][..., perm], **tol)
    torch.testing.assert_close(logits_p[..., N:], logits[..., N:], **tol)
    torch.testing.assert_close(decision_p, decision, **tol)
    torch.testing.assert_close(v_p, v, **tol)


def test_attention_mask_structure():
    allowed = graph_pair_attention_allowed(2)
    # Tokens: pooled0, pooled1, A0, A1, B0, B1. Nodes never attend within their own graph.
    expected = torch.tensor(
        [
            [1, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1, 1],
            [1, 1, 0, 0, 1, 1],
            [1, 1, 0, 0, 1, 1],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0, 0],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(allowed, expected)
    node_mask = torch.tensor([[[True, False], [True, True]]])
    bias = graph_pair_attention_bias(allowed, node_mask)
    assert bias.shape == (1, 1, 6, 6)
    forbidden = ~expected.clone()
    forbidden[:, 3] = True  # node A1 does not exist: nobody attends to it
    assert torch.equal(bias[0, 0] < 0, forbidden)
    assert (bias[0, 0][~forbidden] == 0).all()


def test_encoder_layer_matches_torch_and_respects_mask():
    torch.manual_seed(0)
    d, heads, ff, n = 8, 2, 12, 3
    layer = TransformerEncoderLayer(d, heads, ff)
    orthogonal_init_(layer)
    with torch.no_grad():  # non-trivial biases and norms
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    reference = nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, batch_first=True)
    with torch.no_grad():
        reference.self_attn.in_proj_weight.copy_(layer.attn.qkv.weight)
        reference.self_attn.in_proj_bias.copy_(layer.attn.qkv.bias)
        reference.self_attn.out_proj.weight.copy_(layer.attn.out.weight)
        reference.self_attn.out_proj.bias.copy_(layer.attn.out.bias)
        for ours, theirs in [(layer.ff1, reference.linear1), (layer.ff2, reference.linear2)]:
            theirs.weight.copy_(ours.weight)
            theirs.bias.copy_(ours.bias)
        for ours, theirs in [(layer.norm1, reference.norm1), (layer.norm2, reference.norm2)]:
            theirs.weight.copy_(ours.weight)
            theirs.bias.copy_(ours.bias)
    reference.eval()

    node_mask = torch.tensor([[[True, True, False], [True, True, True]]] * 4)
    node_mask[1, 0, 1] = False
    structural = graph_pair_attention_allowed(n)
    bias = graph_pair_attention_bias(structural, node_mask)
    tokens = torch.randn(4, 2 + 2 * n, d)
    ours = layer(tokens, bias)
    key_padding = ~torch.cat([torch.ones(4, 2, dtype=torch.bool), node_mask.flatten(1)], 1)
    theirs = reference(tokens, src_mask=~structural, src_key_padding_mask=key_padding)
    exists = ~key_padding
    torch.testing.assert_close(ours[exists], theirs[exists], atol=1e-5, rtol=1e-5)

    # Changing node A0's input leaves A1's output alone (same graph) but changes B0's.
    changed = tokens.clone()
    changed[:, 2] += 1.0
    out = layer(changed, bias)
    torch.testing.assert_close(out[:, 3], ours[:, 3])
    assert not torch.allclose(out[:, 2 + n], ours[:, 2 + n])
    # Changing a non-existent node's input changes no existing token's output.
    changed = tokens.clone()
    changed[:, 4] += 5.0  # A2, missing in every sample
    out = layer(changed, bias)
    keep = exists.clone()
    keep[:, 4] = False
    torch.testing.assert_close(out[keep], ours[keep])


def test_body_ignores_missing_nodes_and_round_zero_message():
    handler = nip_handler(8)
    bodies = build_bodies(handler, PAPER, N, seed=8, role="actor")
    body: GraphIsoAgentBody = bodies["prover"]
    obs = make_obs((5,), handler, 1, gen_seed=4)
    obs["node_mask"][:, :, -1] = False
    obs["adjacency"][..., -1, :] = False
    obs["adjacency"][..., :, -1] = False
    args = ("x", "message", "adjacency", "node_mask", "round")
    with torch.no_grad():
        graph_repr, node_repr = body(*(obs[k] for k in args))
        noisy = dict(obs)
        for key in ("x", "message"):
            noisy[key] = obs[key].clone()
            noisy[key][..., -1] += torch.randn_like(noisy[key][..., -1]) * 10
        graph_repr2, node_repr2 = body(*(noisy[k] for k in args))
        torch.testing.assert_close(graph_repr2, graph_repr)
        exists = obs["node_mask"]
        torch.testing.assert_close(node_repr2[exists], node_repr[exists])

        # In round 0 the message is ignored; later it is not.
        for r, should_change in [(0, False), (2, True)]:
            obs["round"] = torch.full((5,), r)
            before, _ = body(*(obs[k] for k in args))
            changed = dict(obs, message=obs["message"] + 1.0)
            after, _ = body(*(changed[k] for k in args))
            assert torch.allclose(before, after) != should_change


@pytest.mark.parametrize("num_transformer_layers", [0, 1, 2])
def test_graph_only_body_pass_matches_full_pass(num_transformer_layers):
    scenario = tiny_scenario(num_transformer_layers=num_transformer_layers)
    handler = nip_handler(8)
    body = build_bodies(handler, scenario, N, seed=13, role="critic")["verifier"]
    obs = make_obs((4, 2), handler, scenario.message_size, gen_seed=6)
    args = [obs[k] for k in ("x", "message", "adjacency", "node_mask", "round")]
    full, nodes = body(*args)
    graph_only, none = body(*args, need_items=False)
    assert nodes is not None and none is None
    torch.testing.assert_close(graph_only, full, atol=1e-6, rtol=1e-6)


def test_fast_tanh_matches_tanh():
    x = torch.linspace(-12, 12, 2001, dtype=torch.float32, requires_grad=True)
    y = fast_tanh(x)
    torch.testing.assert_close(y, torch.tanh(x), atol=3e-7, rtol=0)
    (grad,) = torch.autograd.grad(y.sum(), x)
    (expected,) = torch.autograd.grad(torch.tanh(x).sum(), x)
    torch.testing.assert_close(grad, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("num_layers", [1, 2, 4])
def test_mlp_matches_plain_sequential(activation, num_layers):
    torch.manual_seed(0)
    m = mlp(3, 7, 5, num_layers, activation)
    linears = [x for x in m.modules() if isinstance(x, nn.Linear)]
    assert len(linears) == max(num_layers, 2)
    with torch.no_grad():
        for lin in linears:
            lin.bias.normal_()
    act = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}[activation]
    layers: list[nn.Module] = []
    for lin in linears[:-1]:
        layers += [lin, act()]
    reference = nn.Sequential(*layers, linears[-1])
    x = torch.randn(4, 6, 3, requires_grad=True)
    out, expected = m(x), reference(x)
    torch.testing.assert_close(out, expected, atol=2e-6, rtol=1e-5)
    grads = torch.autograd.grad(out.square().sum(), [x, *m.parameters()])
    expected_grads = torch.autograd.grad(expected.square().sum(), [x, *m.parameters()])
    for g, e in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-4)


def test_gradients_reach_every_parameter():
    handler = nip_handler(8)
    for shared in (False, True):
        policy, value = build_combined_agents(handler, PAPER, N, seed=9, use_shared_body=shared)
        obs = make_obs((6,), handler, 1, gen_seed=5)
        obs["round"] = torch.tensor([1, 2, 3, 4, 5, 6])  # messages are seen
        logits, decision = run_policy(policy, obs)
        v = run_value(value, obs)
        (logits.clamp(min=-5).sum() + decision.sum() + v.sum()).backward()
        params = dict(policy.named_parameters()) | {
            f"value.{k}": p for k, p in value.named_parameters()
        }
        for name, p in params.items():
            assert p.grad is not None, name
            assert p.grad.abs().sum() > 0, name


# ------------------------------------------------------------------------------------------
# Initialisation
# ------------------------------------------------------------------------------------------
def _fingerprint(module: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_init_is_reproducible_and_seed_dependent():
    handler = nip_handler(8)
    p1, v1 = build_combined_agents(handler, PAPER, N, seed=10, use_shared_body=False)
    torch.manual_seed(123)  # the global RNG must not matter
    state = torch.random.get_rng_state()
    p2, v2 = build_combined_agents(handler, PAPER, N, seed=10, use_shared_body=False)
    assert torch.equal(torch.random.get_rng_state(), state)  # and is left untouched
    assert _fingerprint(p1) == _fingerprint(p2) and _fingerprint(v1) == _fingerprint(v2)
    p3, _ = build_combined_agents(handler, PAPER, N, seed=11, use_shared_body=False)
    for name in handler.agent_names:
        assert _fingerprint(p1.bodies[name]) != _fingerprint(p3.bodies[name])
        assert _fingerprint(p1.heads[name]) != _fingerprint(p3.heads[name])
    # Actor and critic bodies differ.
    assert _fingerprint(p1.bodies["prover"]) != _fingerprint(v1.bodies["prover"])

    # Listing the agents in another order does not change any agent's parameters.
    rev_policy, rev_value = build_combined_agents(
        ReversedNipHandler(ProtocolConfig()), PAPER, N, seed=10, use_shared_body=False
    )
    for name in handler.agent_names:
        assert _fingerprint(rev_policy.bodies[name]) == _fingerprint(p1.bodies[name])
        assert _fingerprint(rev_policy.heads[name]) == _fingerprint(p1.heads[name])
        assert _fingerprint(rev_value.value_heads[name]) == _fingerprint(v1.value_heads[name])


def test_linear_layers_are_orthogonal_with_zero_bias():
    bodies = build_bodies(nip_handler(8), PAPER, N, seed=12, role="actor")
    qkv = bodies["verifier"].transformer[0].attn.qkv
    for block in qkv.weight.split(qkv.in_features, dim=0):
        torch.testing.assert_close(block @ block.T, torch.eye(block.shape[0]), atol=1e-5, rtol=0)
    fused = {id(body.transformer[0].attn.qkv) for body in bodies.values()}
    for m in bodies.modules():
        if isinstance(m, nn.Linear) and id(m) not in fused:
            w = m.weight
            gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
            torch.testing.assert_close(gram, torch.eye(gram.shape[0]), atol=1e-5, rtol=0)
            assert (m.bias == 0).all()


_FINGERPRINT_SCRIPT = """
import hashlib, torch
from nip.config.protocol import ProtocolConfig
from nip.scenarios.graph_iso.config import GraphIsoScenarioConfig
from nip.protocols import build_protocol_handler
from nip.scenarios.graph_iso.agents import build_combined_agents
p, v = build_combined_agents(
    build_protocol_handler(ProtocolConfig()), GraphIsoScenarioConfig(), 6, 10, False
)
digest = hashlib.sha256()
for module in (p, v):
    for name, t in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(t.detach().contiguous().numpy().tobytes())
print(digest.hexdigest())
"""


def test_init_does_not_depend_on_the_process():
    policy, value = build_combined_agents(nip_handler(8), PAPER, N, seed=10, use_shared_body=False)
    digest = hashlib.sha256()
    for module in (policy, value):
        for name, t in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(t.detach().contiguous().numpy().tobytes())
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run(
        [sys.executable, "-c", _FINGERPRINT_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == digest.hexdigest()


# ------------------------------------------------------------------------------------------
# Optimizer parameter groups
# ------------------------------------------------------------------------------------------
def _lr_by_name(groups: list[dict]) -> dict[str, float]:
    return {g["name"]: g["lr"] for g in groups}


def _assert_partition(groups, policy, value, *, allow_frozen: bool = False) -> None:
    """Every parameter of policy and value is in exactly one group (or frozen and in none)."""
    in_groups = [id(p) for g in groups for p in g["params"]]
    assert len(in_groups) == len(set(in_groups))
    all_params = {id(p): p for m in (policy, value) for p in m.parameters()}
    grouped = set(in_groups)
    assert grouped <= set(all_params)
    for key, p in all_params.items():
        if key not in grouped:
            assert allow_frozen and not p.requires_grad
        else:
            assert p.requires_grad


def test_parameter_groups_reference_numbers_shared_body():
    prover = dataclasses.replace(
        PAPER.prover, body_lr_factor=LrFactors(0.1, 0.1), gnn_lr_factor=LrFactors(0.1, 0.1)
    )
    scenario = dataclasses.replace(PAPER, prover=prover)
    handler = nip_handler(8)
    policy, value = build_combined_agents(handler, scenario, N, seed=0, use_shared_body=True)
    groups = get_scenario("graph_iso").parameter_groups(
        policy, value, scenario, handler, base_lr=3.0
    )
    lrs = _lr_by_name(groups)
    assert lrs["prover.actor_gnn"] == pytest.approx(0.03)
    assert lrs["prover.actor_body"] == pytest.approx(0.3)
    assert lrs["prover.actor_head"] == pytest.approx(3.0)
    assert lrs["prover.critic_head"] == pytest.approx(3.0)
    assert lrs["verifier.actor_gnn"] == pytest.approx(3.0)
    # A shared body appears once, so there are no critic body groups.
    assert not any(name.endswith(("critic_gnn", "critic_body")) for name in lrs)
    _assert_partition(groups, policy, value)
    # The groups hold exactly the right modules' parameters.
    by_name = {g["name"]: {id(p) for p in g["params"]} for g in groups}
    assert by_name["prover.actor_gnn"] == {id(p) for p in policy.bodies["prover"].gnn.parameters()}
    assert by_name["verifier.critic_head"] == {
        id(p) for p in value.value_heads["verifier"].parameters()
    }
    torch.optim.Adam(groups)  # a valid optimizer spec


def test_parameter_groups_reference_numbers_unshared_bodies():
    agent = dataclasses.replace(
        PAPER.prover, body_lr_factor=LrFactors(0.1, 10), gnn_lr_factor=LrFactors(0.1, 10)
    )
    scenario = dataclasses.replace(PAPER, prover=agent)
    handler = nip_handler(8)
    policy, value = build_combined_agents(handler, scenario, N, seed=0, use_shared_body=False)
    groups = get_scenario("graph_iso").parameter_groups(
        policy, value, scenario, handler, base_lr=3.0
    )
    lrs = _lr_by_name(groups)
    assert lrs["prover.actor_gnn"] == pytest.approx(0.03)
    assert lrs["prover.critic_gnn"] == pytest.approx(300.0)
    assert lrs["prover.actor_body"] == pytest.approx(0.3)
    assert lrs["prover.critic_body"] == pytest.approx(30.0)
    assert lrs["prover.actor_head"] == pytest.approx(3.0)
    assert lrs["prover.critic_head"] == pytest.approx(3.0)
    assert {k for k in lrs if k.startswith("verifier.")} == {
        f"verifier.{role}_{part}"
        for role in ("actor", "critic")
        for part in ("gnn", "body", "head")
    }
    _assert_partition(groups, policy, value)
    n_params = len({id(p) for m in (policy, value) for p in m.parameters()})
    assert sum(len(g["params"]) for g in groups) == n_params


def test_zero_learning_rate_freezes():
    verifier = dataclasses.replace(
        PAPER.verifier,
        agent_lr_factor=LrFactors(actor=1.0, critic=0.0),
        gnn_lr_factor=LrFactors(actor=0.0, critic=1.0),
    )
    scenario = dataclasses.replace(PAPER, verifier=verifier)
    handler = nip_handler(8)
    policy, value = build_combined_agents(handler, scenario, N, seed=0, use_shared_body=False)
    groups = get_scenario("graph_iso").parameter_groups(
        policy, value, scenario, handler, base_lr=1.0
    )
    names = set(_lr_by_name(groups))
    assert "verifier.actor_gnn" not in names and "verifier.actor_body" in names
    assert not any(n.startswith("verifier.critic") for n in names)
    assert all(not p.requires_grad for p in policy.bodies["verifier"].gnn.parameters())
    assert all(not p.requires_grad for p in value.bodies["verifier"].parameters())
    assert all(not p.requires_grad for p in value.value_heads["verifier"].parameters())
    assert all(p.requires_grad for p in policy.heads["verifier"].parameters())
    _assert_partition(groups, policy, value, allow_frozen=True)
