"""The zero-knowledge construction: agents, channels, turns, done rules and rewards."""

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from nip.config.protocol import ProtocolConfig
from nip.experiment_settings import ExperimentSettings
from nip.protocols import build_protocol_handler
from nip.run import run_experiment
from tests.helpers import tiny_hyper_params, tiny_protocol_run
from tests.test_protocol_catalogue import PROTOCOLS


def zk(name, **changes):
    return dataclasses.replace(PROTOCOLS[name], zero_knowledge=True, **changes)


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_agents_and_channels(name):
    base = build_protocol_handler(PROTOCOLS[name])
    handler = build_protocol_handler(zk(name))
    assert handler.agent_names == (*base.agent_names, "adversarial_verifier", "simulator")
    assert handler.channel_names == tuple(
        f"{c}_{kind}"
        for kind in ("standard", "adversarial", "simulator")
        for c in base.channel_names
    )
    assert handler.verifier_names == ("verifier", "adversarial_verifier")


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_active_agents_follow_the_base_protocol(name):
    base = build_protocol_handler(PROTOCOLS[name])
    handler = build_protocol_handler(zk(name))
    rounds = torch.arange(base.max_message_rounds).repeat(4)
    seeds = torch.randint(0, 2**16, rounds.shape, generator=torch.Generator().manual_seed(0))
    base_mask = base.active_mask(rounds, seeds)
    mask = handler.active_mask(rounds, seeds)
    for i in range(len(rounds)):
        expected = set()
        for a, c in zip(*torch.nonzero(base_mask[i], as_tuple=True), strict=True):
            agent, channel = base.agent_names[a], base.channel_names[c]
            if agent == "verifier":
                expected |= {
                    ("verifier", f"{channel}_standard"),
                    ("adversarial_verifier", f"{channel}_adversarial"),
                    ("simulator", f"{channel}_simulator"),
                }
            else:
                expected |= {(agent, f"{channel}_standard"), (agent, f"{channel}_adversarial")}
        actual = {
            (handler.agent_names[a], handler.channel_names[c])
            for a, c in zip(*torch.nonzero(mask[i], as_tuple=True), strict=True)
        }
        assert actual == expected
    # Every active pair is visible.
    assert not (mask & ~handler.agent_channel_visibility).any()


def test_zero_knowledge_nip_step():
    """The composition of the base rules with the adversary's and simulator's, on a random
    batch with two batch dimensions."""
    params = ProtocolConfig(
        zero_knowledge=True,
        min_message_rounds=1,
        zk_simulator_reward_coefficient=0.342,
        zk_aux_prover_reward_coefficient=0.123,
    )
    handler = build_protocol_handler(params)
    base = handler.base
    g = torch.Generator().manual_seed(1)
    shape = (32, 8)
    a, c, k = 4, 3, 10
    round_ = torch.randint(0, 8, shape, generator=g)
    seed = torch.randint(0, 2**16, shape, generator=g)
    decision = torch.randint(0, 3, (*shape, a), generator=g)
    y = torch.randint(0, 2, shape, generator=g)
    done = torch.rand(shape, generator=g) < 0.1
    agent_done = (torch.rand((*shape, a), generator=g) < 0.2) | done[..., None]
    terminated = torch.zeros(shape, dtype=torch.bool)
    node_logits = torch.randn((*shape, a, c, 1, k), generator=g)
    decision_logits = torch.randn((*shape, a, 3), generator=g)
    original = node_logits.clone(), decision_logits.clone()
    out = handler.step(
        round=round_,
        seed=seed,
        decision=decision,
        y=y,
        done=done,
        agent_done=agent_done,
        terminated=terminated,
        node_logits=node_logits,
        decision_logits=decision_logits,
    )
    # The policy's outputs are read, never written.
    assert torch.equal(node_logits, original[0]) and torch.equal(decision_logits, original[1])
    ref = base.step(
        round=round_,
        seed=seed,
        decision=decision[..., :2],
        y=y,
        done=done,
        agent_done=agent_done[..., :2],
        terminated=terminated,
    )
    verifier_active = base.active_mask(round_, seed)[..., 1, 0]
    adv_done = ((decision[..., 2] != 2) & verifier_active) | agent_done[..., 2]
    shared = (ref.agent_done[..., 1] & adv_done) | done
    assert torch.equal(out.agent_done[..., 1], ref.agent_done[..., 1])
    assert torch.equal(out.agent_done[..., 2], adv_done)
    assert torch.equal(out.shared_done, shared)
    assert torch.equal(out.agent_done[..., 0], shared) and torch.equal(
        out.agent_done[..., 3], shared
    )
    assert torch.equal(out.terminated, ref.terminated | ((round_ == 7) & ~shared))
    torch.testing.assert_close(out.reward[..., 1], ref.reward[..., 1])

    msg_cos = F.cosine_similarity(
        F.softmax(node_logits[..., 2, 1, 0, :], -1),
        F.softmax(node_logits[..., 3, 2, 0, :], -1),
        dim=-1,
    )
    dec_cos = F.cosine_similarity(
        F.softmax(decision_logits[..., 2, :], -1), F.softmax(decision_logits[..., 3, :], -1), dim=-1
    )
    sim = 0.342 * (msg_cos * verifier_active + dec_cos * verifier_active)
    torch.testing.assert_close(out.reward[..., 3], sim)
    torch.testing.assert_close(out.reward[..., 2], -sim)
    torch.testing.assert_close(out.reward[..., 0], ref.reward[..., 0] + 0.123 * sim)


def test_decision_mask_includes_the_adversary():
    handler = build_protocol_handler(zk("nip"))
    mask = handler.decision_mask(torch.arange(4), torch.zeros(4, dtype=torch.long))
    assert mask.tolist() == [[False, True, True, False], [False] * 4] * 2


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_tiny_zero_knowledge_training_run(name, tmp_path, small_datasets):
    trainer, rows = tiny_protocol_run(tmp_path, zk(name))
    assert len(rows) == 3 and "test_mean_accuracy" in rows[-1]
    for agent in ("adversarial_verifier", "simulator"):
        assert agent in trainer.agent_names
        assert f"{agent}.mean_episode_reward" in rows[0]
        assert f"{agent}.loss_objective" in rows[0]


def test_zero_knowledge_debate_resumes_exactly(tmp_path, small_datasets):
    """Five agents and six channels go through checkpoints and resumption unchanged."""

    def run(run_dir, iterations):
        hp = tiny_hyper_params(tmp_path / "cache", num_iterations=iterations)
        hp.protocol = zk("debate")
        s = ExperimentSettings(run_dir=run_dir, progress_bar=False, cache_dir=tmp_path)
        run_experiment(hp, s)
        rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return [
            {k: v for k, v in r.items() if not k.startswith(("time_", "frames_", "sys_"))}
            for r in rows
        ]

    straight = run(tmp_path / "straight", 3)
    run(tmp_path / "resumed", 1)
    assert run(tmp_path / "resumed", 3) == straight
