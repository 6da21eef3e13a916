"""The graph-isomorphism environment: specs, the reference step table, resets, data order."""

import torch
from torchrl.envs.utils import check_env_specs

from nip.config.protocol import MultiProverProtocolConfig, ProtocolConfig
from nip.protocols import build_protocol_handler
from nip.scenarios.graph_iso.environment import GraphIsoEnvironment
from tests.helpers import random_pairs
from tests.test_protocols import (
    DONE_IN,
    EXPECTED_DONE,
    EXPECTED_REWARD,
    ROUNDS,
    TABLE_PARAMS,
    VERIFIER_DECISION,
    Y,
)


def make_env(num_envs=4, params=None, message_size=1, seed=0, num_pairs=20):
    handler = build_protocol_handler(params or ProtocolConfig())
    return GraphIsoEnvironment(
        random_pairs(num_pairs, num_nodes=8),
        handler,
        num_envs,
        message_size=message_size,
        seed=seed,
    )


def test_check_env_specs():
    check_env_specs(make_env(message_size=3))
    check_env_specs(make_env(num_envs=1))


def test_environment_step_table():
    """The reference's pinned step: messages, history, round, done and per-agent rewards."""
    n = len(ROUNDS)
    env = make_env(num_envs=n, params=TABLE_PARAMS)
    td = env.reset()
    td["round"] = torch.tensor(ROUNDS)
    td["y"] = torch.tensor(Y)
    td["done"] = torch.tensor(DONE_IN, dtype=torch.bool)[:, None]
    nodes = torch.randint(0, 16, (n, 2), generator=torch.Generator().manual_seed(3))
    decision = torch.stack([torch.zeros(n, dtype=torch.long), torch.tensor(VERIFIER_DECISION)], -1)
    td["agents", "action"] = torch.cat([nodes[..., None], decision[..., None]], -1)
    out = env.step(td)["next"]

    assert out["done"][:, 0].long().tolist() == EXPECTED_DONE
    reward = out["agents", "reward"][..., 0]
    assert reward.tolist() == [list(map(float, r)) for r in EXPECTED_REWARD]
    assert out["round"].tolist() == [r + 1 for r in ROUNDS]
    # The agent active in a round is the prover in even rounds, the verifier in odd ones.
    speaker = torch.tensor(ROUNDS) % 2
    chosen = nodes[torch.arange(n), speaker]
    expected_message = torch.nn.functional.one_hot(chosen, 16).float().view(n, 1, 1, 2, 8)
    assert torch.equal(out["message"], expected_message)
    history = out["message_history"]
    for row, r in enumerate(ROUNDS):
        assert torch.equal(history[row, r], expected_message[row])
        others = torch.cat([history[row, :r], history[row, r + 1 :]])
        assert others.abs().sum() == 0
    assert torch.equal(out["x"], history)


def test_partial_reset_refills_only_finished_rows():
    env = make_env(num_envs=6, num_pairs=50)
    td = env.reset()
    first_ids = td["datapoint_id"].clone()
    # The verifier (active in even rounds) accepts everywhere; with the default
    # min_message_rounds=3 only rows at round >= 2 may decide.
    action = torch.zeros(6, 2, 2, dtype=torch.long)
    action[:, 1, 1] = 1
    td["agents", "action"] = action
    td["round"] = torch.tensor([0, 0, 0, 2, 2, 4])
    stepped, next_td = env.step_and_maybe_reset(td)
    done = stepped["next", "done"][:, 0]
    assert done.tolist() == [False, False, False, True, True, True]
    assert (next_td["round"][done] == 0).all()
    assert (next_td["round"][~done] == stepped["next", "round"][~done]).all()
    assert torch.equal(next_td["datapoint_id"][~done], first_ids[~done])
    assert (next_td["message_history"][done] == 0).all()


def test_data_order_depends_on_seed_and_covers_dataset():
    def served(seed):
        env = make_env(num_envs=5, num_pairs=20, seed=seed)
        return torch.cat([env.reset()["datapoint_id"] for _ in range(4)])

    a, b = served(0), served(1)
    assert sorted(a.tolist()) == list(range(20))  # one epoch is a permutation
    assert torch.equal(a, served(0))
    assert not torch.equal(a, b)


def test_env_state_round_trip():
    env = make_env(num_envs=3, num_pairs=10)
    env.reset()
    state = env.env_state()
    expected = [env.reset()["datapoint_id"].tolist() for _ in range(5)]
    env.load_env_state(state)
    assert [env.reset()["datapoint_id"].tolist() for _ in range(5)] == expected


def _masks_over_an_episode(params, num_rounds):
    """The turn masks the environment shows in each round when nobody decides."""
    env = make_env(num_envs=2, params=params)
    td = env.reset()
    num_agents = env.num_agents
    nodes, decisions = [], []
    for round_ in range(num_rounds):
        assert (td["round"] == round_).all()
        nodes.append(td["agents", "node_active"][0].tolist())
        decisions.append(td["agents", "decision_active"][0].tolist())
        action = torch.zeros(2, num_agents, env.num_channels + 1, dtype=torch.long)
        action[..., -1] = 2  # everyone continues
        td["agents", "action"] = action
        td = env.step(td)["next"]
    return nodes, decisions


def test_turn_masks_nip():
    """Only actions that can have an effect count: the verifier's messages in its rounds
    (0, 2, 4, 6), its decisions inside the decision window (rounds >= min - 1 = 2), the
    prover's messages in rounds 1, 3, 5 but not in the final round 7, which nobody reads."""
    nodes, decisions = _masks_over_an_episode(ProtocolConfig(), 8)
    prover = [[r in (1, 3, 5)] for r in range(8)]
    verifier = [[r in (0, 2, 4, 6)] for r in range(8)]
    assert nodes == [[p, v] for p, v in zip(prover, verifier, strict=True)]
    assert decisions == [[False, r in (2, 4, 6)] for r in range(8)]


def test_turn_masks_debate():
    params = MultiProverProtocolConfig(name="debate")
    nodes, decisions = _masks_over_an_episode(params, 8)
    for r in range(8):
        prover_turn = r in (1, 3, 5)
        verifier_turn = r in (0, 2, 4, 6)
        assert nodes[r] == [
            [prover_turn, False],
            [False, prover_turn],
            [verifier_turn, verifier_turn],
        ]
        assert decisions[r] == [False, False, r in (2, 4, 6)]


def test_turn_masks_adp():
    """ADP: the prover's one message counts; the verifier's message in the last round never
    does, its decision always does."""
    params = ProtocolConfig(name="adp", max_message_rounds=2, min_message_rounds=1)
    params.verifier_first = False
    nodes, decisions = _masks_over_an_episode(params, 2)
    assert nodes == [[[True], [False]], [[False], [False]]]
    assert decisions == [[False, False], [False, True]]


def test_data_cycler_refuses_an_empty_dataset():
    import pytest

    from nip.environment import DataCycler

    with pytest.raises(ValueError, match="at least one item"):
        DataCycler(0, torch.Generator())
