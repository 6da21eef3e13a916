"""The episode-level DiCE surrogates' derivatives against values computed by hand, on a
two-agent game with tabular (softmax) policies."""

import pytest
import torch

from nip.objectives.dice import episode_surrogates


@pytest.fixture(autouse=True)
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


# One row of four frames: two episodes of two steps. Agent 0 (3 actions) acts first, agent 1
# (2 actions) second; the actions taken are 2, 1 in the first episode and 0, 0 in the second.
ACTOR = [0, 1, 0, 1]
ACTIONS = [2, 1, 0, 0]
STARTS = torch.tensor([[True, False, True, False]])
PLAYING = torch.tensor([[[a == i for i in range(2)] for a in ACTOR]])
# Values on frames where an agent does not act must not matter (9 and 7 below).
ADVANTAGE = torch.tensor([[[0.5, 7.0], [9.0, 2.0], [-1.5, 7.0], [9.0, -0.8]]])


def _tabular():
    theta0 = torch.tensor([0.3, -0.2, 0.5], requires_grad=True)
    theta1 = torch.tensor([-0.4, 0.1], requires_grad=True)
    return theta0, theta1


def _joint(theta0, theta1):
    """l_t: the log-probability of frame t's action under its actor's softmax policy."""
    policies = (theta0.log_softmax(0), theta1.log_softmax(0))
    return torch.stack([policies[a][x] for a, x in zip(ACTOR, ACTIONS, strict=True)])[None]


def _score(theta, action):
    """grad log softmax(theta)[action] = e_action - softmax(theta)."""
    return torch.nn.functional.one_hot(torch.tensor(action), len(theta)) - theta.softmax(0)


def _mixed(loss, first, second):
    """d^2 loss / d first d second, ``[len(first), len(second)]``."""
    (grad,) = torch.autograd.grad(loss, second, create_graph=True)
    rows = [torch.autograd.grad(g, first, retain_graph=True)[0] for g in grad]
    return torch.stack(rows, dim=1)


def test_surrogates_are_zero_with_the_policy_gradient_as_first_derivative():
    theta0, theta1 = _tabular()
    losses = episode_surrogates(_joint(theta0, theta1), STARTS, PLAYING, ADVANTAGE, [0, 1])
    assert [loss.item() for loss in losses] == [0.0, 0.0]
    # -J_1 = -(1/2) sum over agent 1's frames of A_1,t l_t: its gradient in theta1.
    (grad,) = torch.autograd.grad(losses[1], theta1, retain_graph=True)
    d = theta1.detach()
    expected = -(2.0 * _score(d, 1) - 0.8 * _score(d, 0)) / 2
    assert torch.allclose(grad, expected, atol=1e-12)
    (grad,) = torch.autograd.grad(losses[0], theta0)
    d = theta0.detach()
    assert torch.allclose(grad, -(0.5 * _score(d, 2) - 1.5 * _score(d, 0)) / 2, atol=1e-12)


def test_the_mixed_second_derivative_couples_actions_of_one_episode_only():
    """d^2(-J_1)/d theta0 d theta1 = -(1/2) sum_episodes A_1,t score0(a_s) score1(a_t)^T, with
    s the first frame and t the second of the same episode: no cross-episode products
    (score0(a_0) score1(a_3)^T, ...). Agent 0 acts first, so nothing of agent 1's policy
    reaches agent 0's gradient: d^2(-J_0)/d theta1 d theta0 = 0."""
    theta0, theta1 = _tabular()
    losses = episode_surrogates(_joint(theta0, theta1), STARTS, PLAYING, ADVANTAGE, [0, 1])
    d0, d1 = theta0.detach(), theta1.detach()
    first = 2.0 * torch.outer(_score(d0, 2), _score(d1, 1))  # episode 1: a_0, a_1
    second = -0.8 * torch.outer(_score(d0, 0), _score(d1, 0))  # episode 2: a_2, a_3
    expected = -(first + second) / 2
    assert torch.allclose(_mixed(losses[1], theta0, theta1), expected, atol=1e-12)
    assert torch.allclose(_mixed(losses[0], theta1, theta0), torch.zeros(2, 3), atol=1e-12)


def test_the_clipped_surrogate_scales_by_the_ratio_and_drops_clipped_frames():
    """Collection-time log-probabilities: frame 1 at ratio exp(-0.1) (inside 1 +- 0.2), frame 3
    at ratio exp(0.5) with A = +0.8 (clipped: min picks the constant 1.2 A). The mixed
    derivative is -(1/2) exp(-0.1) * 2 * score0(a_0) score1(a_1)^T; the second episode adds
    nothing."""
    theta0, theta1 = _tabular()
    joint = _joint(theta0, theta1)
    old = joint.detach() - torch.tensor([[0.0, -0.1, 0.0, 0.5]])
    advantage = ADVANTAGE.clone()
    advantage[0, 3, 1] = 0.8
    losses = episode_surrogates(joint, STARTS, PLAYING, advantage, [1], old, clip_epsilon=0.2)
    d0, d1 = theta0.detach(), theta1.detach()
    ratio = torch.exp(torch.tensor(-0.1))
    expected = -ratio * 2.0 * torch.outer(_score(d0, 2), _score(d1, 1)) / 2
    assert torch.allclose(_mixed(losses[0], theta0, theta1), expected, atol=1e-12)
