"""Every protocol: turn order, channel visibility, reward rows, and a tiny training run."""

import dataclasses

import pytest
import torch

from nip.config.protocol import MultiProverProtocolConfig, ProtocolConfig
from nip.errors import NipConfigError
from nip.protocols import build_protocol_handler
from tests.helpers import tiny_protocol_run

FIXED = dict(min_message_rounds=1, max_message_rounds=2, verifier_first=False)
PROTOCOLS = {
    "nip": ProtocolConfig(name="nip"),
    "adp": ProtocolConfig(name="adp", **FIXED),
    "debate": MultiProverProtocolConfig(name="debate"),
    "mnip": MultiProverProtocolConfig(name="mnip"),
    "merlin_arthur": ProtocolConfig(name="merlin_arthur", **FIXED),
    "solo_verifier": ProtocolConfig(
        name="solo_verifier", min_message_rounds=1, max_message_rounds=1
    ),
}


def active_sets(params, rounds, seed=0):
    """For each round, the set of (agent, channel) pairs that are active."""
    handler = build_protocol_handler(params)
    mask = handler.active_mask(torch.arange(rounds), torch.full((rounds,), seed))
    return [
        {
            (handler.agent_names[a], handler.channel_names[c])
            for a, c in zip(*torch.nonzero(mask[r], as_tuple=True), strict=True)
        }
        for r in range(rounds)
    ]


def test_adp_turns():
    assert active_sets(PROTOCOLS["adp"], 2) == [{("prover", "main")}, {("verifier", "main")}]


def test_debate_simultaneous_turns():
    v = {("verifier", "prover0_channel"), ("verifier", "prover1_channel")}
    p = {("prover0", "prover0_channel"), ("prover1", "prover1_channel")}
    assert active_sets(PROTOCOLS["debate"], 4) == [v, p, v, p]
    provers_first = dataclasses.replace(PROTOCOLS["debate"], verifier_first=False)
    assert active_sets(provers_first, 2) == [p, v]


@pytest.mark.parametrize("name", ["debate", "mnip"])
def test_sequential_turns(name):
    params = dataclasses.replace(PROTOCOLS[name], sequential=True)
    v = {("verifier", "prover0_channel"), ("verifier", "prover1_channel")}
    p0, p1 = {("prover0", "prover0_channel")}, {("prover1", "prover1_channel")}
    assert active_sets(params, 6) == [v, p0, p1, v, p0, p1]
    params = dataclasses.replace(params, prover0_first=False, verifier_first=False)
    assert active_sets(params, 3) == [p1, p0, v]


def test_channel_visibility():
    debate = build_protocol_handler(PROTOCOLS["debate"]).agent_channel_visibility
    assert debate.all()
    mnip = build_protocol_handler(PROTOCOLS["mnip"]).agent_channel_visibility
    assert mnip.tolist() == [[True, False], [False, True], [True, True]]


def test_merlin_arthur_prover_from_episode_seed():
    assert active_sets(PROTOCOLS["merlin_arthur"], 2, seed=4) == [
        {("prover1", "main")},
        {("verifier", "main")},
    ]
    assert active_sets(PROTOCOLS["merlin_arthur"], 2, seed=7)[0] == {("prover0", "main")}


def step(params, rounds, decisions, y, seed=None):
    handler = build_protocol_handler(params)
    n = len(rounds)
    decision = torch.zeros(n, handler.num_agents, dtype=torch.long)
    decision[:, handler.verifier_index] = torch.tensor(decisions)
    return handler.step(
        round=torch.tensor(rounds),
        seed=torch.tensor(seed if seed is not None else [0] * n),
        decision=decision,
        y=torch.tensor(y),
        done=torch.zeros(n, dtype=torch.bool),
        agent_done=torch.zeros(n, handler.num_agents, dtype=torch.bool),
        terminated=torch.zeros(n, dtype=torch.bool),
    )


def test_debate_rewards_each_side():
    # Verifier (even rounds) rejects / accepts / continues; min rounds 1.
    params = dataclasses.replace(PROTOCOLS["debate"], min_message_rounds=1)
    out = step(params, [0, 2, 4, 7], [0, 1, 2, 1], [0, 0, 1, 1])
    assert out.shared_done.tolist() == [True, True, False, False]
    assert out.terminated.tolist() == [False, False, False, True]
    # Columns: prover0 (reject), prover1 (accept), verifier.
    expected = torch.tensor([[1, 0, 1], [0, 1, -1], [0, 0, 0.05], [0, 0, -1]])
    torch.testing.assert_close(out.reward, expected)


def test_mnip_rewards_both_provers_for_acceptance():
    params = dataclasses.replace(PROTOCOLS["mnip"], min_message_rounds=1)
    out = step(params, [0, 2], [0, 1], [0, 1])
    assert out.reward.tolist() == [[0, 0, 1], [1, 1, 1]]


def test_adp_and_merlin_arthur_rewards():
    out = step(PROTOCOLS["adp"], [0, 1, 1], [1, 1, 2], [1, 0, 1])
    # Round 0 is the prover's: the verifier's decision does not count there.
    assert out.shared_done.tolist() == [False, True, False]
    assert out.terminated.tolist() == [False, False, True]
    assert out.reward.tolist() == [[0, 0], [1, -1], [0, -1]]
    out = step(PROTOCOLS["merlin_arthur"], [1, 1], [0, 1], [0, 0], seed=[3, 4])
    assert out.reward.tolist() == [[1, 0, 1], [0, 1, -1]]


def test_solo_verifier_decides_in_one_round():
    out = step(PROTOCOLS["solo_verifier"], [0, 0, 0], [1, 0, 2], [1, 1, 0])
    assert out.shared_done.tolist() == [True, True, False]
    assert out.terminated.tolist() == [False, False, True]
    assert out.reward.tolist() == [[1], [-1], [-1]]


def test_fixed_structure_protocols_reject_other_rounds():
    with pytest.raises(NipConfigError, match="protocol adp has a fixed structure"):
        build_protocol_handler(dataclasses.replace(PROTOCOLS["adp"], max_message_rounds=8))


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_tiny_training_run(name, tmp_path, small_datasets):
    trainer, rows = tiny_protocol_run(tmp_path, PROTOCOLS[name])
    assert len(rows) == 3 and "test_mean_accuracy" in rows[-1]
    for agent in trainer.agent_names:
        assert f"{agent}.mean_episode_reward" in rows[0]
        assert f"{agent}.loss_objective" in rows[0]


@pytest.mark.parametrize("name", list(PROTOCOLS))
@pytest.mark.parametrize("zero_knowledge", [False, True])
def test_protocol_yaml_composes_and_validates(name, zero_knowledge):
    """Each conf/protocol/*.yaml composes into a valid configuration, with and without ZK."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from nip.cli import CONFIG_DIR
    from nip.config import register_configs, validate_hyper_params

    register_configs()
    overrides = [f"protocol={name}", f"protocol.zero_knowledge={str(zero_knowledge).lower()}"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        hp = OmegaConf.to_object(compose("config", overrides=overrides))
    validate_hyper_params(hp)
    assert hp.protocol.name == name
    handler = build_protocol_handler(hp.protocol)
    assert handler.max_message_rounds == PROTOCOLS[name].max_message_rounds
