"""Off-turn actions are excluded from each agent's log-probability and entropy."""

import torch

from nip.distribution import AgentsActionDistribution


def make_dist(node_active, decision_active, seed=0):
    g = torch.Generator().manual_seed(seed)
    batch, agents, channels, positions, k = 5, 2, 2, 3, 6
    node_logits = torch.randn(batch, agents, channels, positions, k, generator=g)
    decision_logits = torch.randn(batch, agents, 3, generator=g)
    return AgentsActionDistribution(node_logits, decision_logits, node_active, decision_active)


def test_log_prob_counts_only_active_actions():
    node_active = torch.zeros(5, 2, 2, dtype=torch.bool)
    node_active[:, 0, 1] = True  # agent 0 speaks in channel 1 only
    decision_active = torch.zeros(5, 2, dtype=torch.bool)
    decision_active[:, 1] = True  # agent 1 decides
    dist = make_dist(node_active, decision_active)
    action = dist.sample()
    assert action.shape == (5, 2, 2 * 3 + 1)
    log_prob = dist.log_prob(action)
    assert log_prob.shape == (5, 2)

    node_lp = torch.log_softmax(dist.node_logits, -1)
    dec_lp = torch.log_softmax(dist.decision_logits, -1)
    nodes = action[..., :6].view(5, 2, 2, 3)
    expected0 = node_lp[:, 0, 1].gather(-1, nodes[:, 0, 1, :, None]).squeeze(-1).sum(-1)
    expected1 = dec_lp[:, 1].gather(-1, action[:, 1, 6:]).squeeze(-1)
    torch.testing.assert_close(log_prob[:, 0], expected0)
    torch.testing.assert_close(log_prob[:, 1], expected1)

    # Changing an off-turn action leaves the log-probability unchanged.
    changed = action.clone()
    changed[:, 0, :3] = (changed[:, 0, :3] + 1) % 6  # agent 0, channel 0 (inactive)
    changed[:, 0, 6] = (changed[:, 0, 6] + 1) % 3  # agent 0's decision (inactive)
    changed[:, 1, :6] = (changed[:, 1, :6] + 1) % 6  # agent 1's nodes (inactive)
    torch.testing.assert_close(dist.log_prob(changed), log_prob)


def test_entropy_counts_only_active_components():
    node_active = torch.zeros(5, 2, 2, dtype=torch.bool)
    decision_active = torch.zeros(5, 2, dtype=torch.bool)
    dist = make_dist(node_active, decision_active)
    assert (dist.entropy() == 0).all()
    decision_active[:, 1] = True
    dist = make_dist(node_active, decision_active)
    p = torch.softmax(dist.decision_logits[:, 1], -1)
    torch.testing.assert_close(dist.entropy()[:, 1], -(p * p.log()).sum(-1))
    assert (dist.entropy()[:, 0] == 0).all()


def test_sampling_respects_masked_logits():
    node_logits = torch.full((200, 1, 1, 1, 6), -1e9)
    node_logits[..., 4] = 0.0
    decision_logits = torch.tensor([0.0, -1e9, -1e9]).expand(200, 1, 3)
    dist = AgentsActionDistribution(
        node_logits,
        decision_logits,
        torch.ones(200, 1, 1, dtype=torch.bool),
        torch.ones(200, 1, dtype=torch.bool),
    )
    action = dist.sample()
    assert (action[..., 0] == 4).all() and (action[..., 1] == 0).all()
    assert torch.equal(dist.mode, action)
