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
    # A verifier that has finished decides no more and earns nothing, nor do provers via it.
    verifier_finished = agent_done[..., 1]
    base_decision = decision[..., :2].clone()
    base_decision[..., 1] = torch.where(verifier_finished, 2, base_decision[..., 1])
    ref = base.step(
        round=round_,
        seed=seed,
        decision=base_decision,
        y=y,
        done=done,
        agent_done=agent_done[..., :2],
        terminated=terminated,
    )
    verifier_active = base.active_mask(round_, seed)[..., 1, 0]
    adv_done = ((decision[..., 2] != 2) & verifier_active) | agent_done[..., 2]
    ref_reward = torch.where(verifier_finished[..., None], 0.0, ref.reward)
    shared = (ref.agent_done[..., 1] & adv_done) | done
    assert torch.equal(out.agent_done[..., 1], ref.agent_done[..., 1])
    assert torch.equal(out.agent_done[..., 2], adv_done)
    assert torch.equal(out.shared_done, shared)
    assert torch.equal(out.agent_done[..., 0], shared) and torch.equal(
        out.agent_done[..., 3], shared
    )
    assert torch.equal(out.terminated, (round_ == 7) & ~shared)
    torch.testing.assert_close(out.reward[..., 1], ref_reward[..., 1])

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
    torch.testing.assert_close(out.reward[..., 0], ref_reward[..., 0] + 0.123 * sim)


def test_decision_mask_includes_the_adversary():
    """Both verifiers' decisions count in their rounds inside the window (round >= 2)."""
    handler = build_protocol_handler(zk("nip"))
    mask = handler.decision_mask(torch.arange(6), torch.zeros(6, dtype=torch.long))
    off, on = [False] * 4, [False, True, True, False]
    assert mask.tolist() == [off, off, on, off, on, off]


def test_verifier_that_decided_is_done():
    """Zero-knowledge NIP, y = 1: the verifier accepts in round 2, tries to reject in round 4
    (ignored: it has finished), and the adversary decides in round 4, ending the episode."""
    from nip.scenarios.graph_iso.environment import GraphIsoEnvironment
    from tests.helpers import random_pairs

    handler = build_protocol_handler(zk("nip"))
    env = GraphIsoEnvironment(random_pairs(4, 6), handler, 2, seed=0)
    td = env.reset()
    td["y"] = torch.ones(2, dtype=torch.long)
    # Decisions (prover, verifier, adversary, simulator) per round; nodes are all 0.
    script = {0: (2, 2, 2, 2), 1: (2, 2, 2, 2), 2: (2, 1, 2, 2), 3: (2, 2, 2, 2), 4: (2, 0, 1, 2)}
    rows = []
    for round_, decisions in script.items():
        action = torch.zeros(2, 4, 3 + 1, dtype=torch.long)
        action[..., -1] = torch.tensor(decisions)
        td["agents", "action"] = action
        node_active, decision_active = td["agents", "node_active"], td["agents", "decision_active"]
        out = env.step(td)["next"]
        rows.append(
            {
                "reward": out["agents", "reward"][0, :, 0].tolist(),
                "verifier_done": out["agents", "agent_done"][0, 1].item(),
                "done": out["done"][0, 0].item(),
                "terminated": out["terminated"][0, 0].item(),
                "decision": out["verifier_decision"][0].item(),
                "verifier_acts": bool(node_active[0, 1].any() or decision_active[0, 1]),
                # The verifier writes only in the standard block (channel 0).
                "verifier_message": out["message"][0, 0].sum().item() if round_ % 2 == 0 else None,
            }
        )
        td = out
    rewards = [r["reward"] for r in rows]
    assert [r[1] for r in rewards] == pytest.approx([0.05, 0.0, 1.0, 0.0, 0.0])
    assert [r[0] for r in rewards] == [0.0, 0.0, 1.0, 0.0, 0.0]
    assert [r["verifier_done"] for r in rows] == [False, False, True, True, True]
    assert [r["done"] for r in rows] == [False] * 4 + [True]
    assert not any(r["terminated"] for r in rows)
    assert [r["decision"] for r in rows] == [2, 2, 1, 1, 1]
    # It acts in rounds 0 and 2 (and would in 4, but it has finished by then) ...
    assert [r["verifier_acts"] for r in rows] == [True, False, True, False, False]
    # ... and after it has finished it sends nothing.
    assert [r["verifier_message"] for r in rows] == [1.0, None, 1.0, None, 0.0]


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
    resumed = run(tmp_path / "resumed", 3)
    # The first run's final test (at iteration 1) stays; training continues exactly.
    assert resumed[1]["iteration"] == 1 and "test_mean_accuracy" in resumed[1]
    assert resumed[:1] + resumed[2:] == straight
