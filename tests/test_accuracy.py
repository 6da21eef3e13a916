"""Accuracy counts only decisions the verifier really took: scripted agents with known scores.

Every statistic path is checked: training statistics of collected batches
(:func:`nip.stats.rollout_stats`) and the test / ``nip.evaluate`` path
(:func:`nip.evaluation.run_episodes` with :func:`nip.evaluation.episode_stats`).
"""

import dataclasses

import pytest
import torch
from tensordict import TensorDictBase

from nip.config.protocol import MultiProverProtocolConfig, ProtocolConfig
from nip.evaluation import episode_stats, run_episodes
from nip.operators import add_episode_return
from nip.protocols import build_protocol_handler
from nip.protocols.base import ACCEPT, CONTINUE
from nip.scenarios.graph_iso.environment import GraphIsoEnvironment
from nip.stats import rollout_stats
from tests.helpers import random_pairs

GI_LABELS = ("non_isomorphic", "isomorphic")

PROTOCOLS = {
    "nip": ProtocolConfig(),
    "debate": MultiProverProtocolConfig(name="debate"),
    "mnip": MultiProverProtocolConfig(name="mnip"),
    "nip_zero_knowledge": ProtocolConfig(zero_knowledge=True),
}
NUM_PAIRS = 40  # random_pairs labels every even pair isomorphic: exactly half


class ScriptedVerifier:
    """Every agent sends node 0 and continues, except the verifier, which follows ``rule``.

    ``never``: continue in its own rounds, accept in everyone else's (where the environment
    ignores its decision). ``accept_first``: accept as soon as a decision can count.
    """

    def __init__(self, handler, rule: str):
        self.handler, self.rule = handler, rule

    def __call__(self, td: TensorDictBase) -> TensorDictBase:
        h = self.handler
        batch = td.batch_size[0]
        action = torch.zeros(batch, h.num_agents, h.num_channels + 1, dtype=torch.long)
        decision = torch.full((batch, h.num_agents), CONTINUE)
        v = h.verifier_index
        if self.rule == "never":
            own_turn = h.guess_mask(td["round"], td["seed"])
            decision[:, v] = torch.where(own_turn, CONTINUE, ACCEPT)
        else:
            allowed = td["agents", "decision_active"][:, v]
            decision[:, v] = torch.where(allowed, ACCEPT, CONTINUE)
        action[..., -1] = decision
        td["agents", "action"] = action
        return td


def make_env(params, *, num_envs: int, shuffle: bool):
    handler = build_protocol_handler(params)
    env = GraphIsoEnvironment(
        random_pairs(NUM_PAIRS, 6), handler, num_envs, seed=3, shuffle=shuffle
    )
    return add_episode_return(env), handler


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_training_statistics_count_only_real_decisions(name):
    env, handler = make_env(PROTOCOLS[name], num_envs=8, shuffle=True)
    rounds = handler.max_message_rounds
    never = env.rollout(3 * rounds, ScriptedVerifier(handler, "never"), break_when_any_done=False)
    stats = rollout_stats(never, handler.agent_names, label_names=GI_LABELS)
    assert stats["num_episodes"] == 8 * 3
    assert stats["mean_accuracy"] == 0.0
    assert stats["mean_datapoint_accuracy"] == 0.0
    assert stats["terminated_fraction"] == 1.0
    assert stats["accept_fraction"] == 0.0 and stats["reject_fraction"] == 0.0

    env, handler = make_env(PROTOCOLS[name], num_envs=8, shuffle=True)
    first = env.rollout(
        3 * rounds, ScriptedVerifier(handler, "accept_first"), break_when_any_done=False
    )
    stats = rollout_stats(first, handler.agent_names, label_names=GI_LABELS)
    ended = first["next", "done"][..., 0]
    share_isomorphic = first["y"][ended].float().mean().item()
    assert 0 < share_isomorphic < 1
    assert stats["mean_accuracy"] == pytest.approx(share_isomorphic, abs=1e-12)
    assert stats["accept_fraction"] == 1.0
    # Zero knowledge: the adversary never decides, so every episode runs out of rounds,
    # yet the verifier's accuracy is that of the decision it took in round 2.
    assert stats["terminated_fraction"] == (1.0 if "zero_knowledge" in name else 0.0)


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_test_and_evaluation_count_only_real_decisions(name):
    env, handler = make_env(PROTOCOLS[name], num_envs=16, shuffle=False)
    never = run_episodes(env, ScriptedVerifier(handler, "never"), NUM_PAIRS)
    stats = episode_stats(never, handler.agent_names, label_names=GI_LABELS)
    assert stats["test_mean_accuracy"] == 0.0
    assert stats["test_terminated_fraction"] == 1.0
    assert stats["test_accuracy_isomorphic"] == 0.0

    first = run_episodes(env, ScriptedVerifier(handler, "accept_first"), NUM_PAIRS)
    stats = episode_stats(first, handler.agent_names, label_names=GI_LABELS)
    assert stats["test_mean_accuracy"] == 0.5
    assert stats["test_accuracy_isomorphic"] == 1.0
    assert stats["test_accuracy_non_isomorphic"] == 0.0
    assert stats["test_accept_fraction"] == 1.0
    # The verifier's return: +1 when right, -1 when wrong, plus the no-guess reward of its
    # first round (round 0, before the decision window); it earns nothing after deciding.
    verifier = handler.agent_names.index("verifier")
    no_guess = dataclasses.asdict(PROTOCOLS[name])["verifier_no_guess_reward"]
    expected = torch.where(first.y == 1, 1.0, -1.0) + no_guess
    torch.testing.assert_close(first.reward[:, verifier], expected)
