"""The NIP protocol's turn order and the single-verifier reward and done rules."""

import torch

from nip.config.protocol import ProtocolConfig
from nip.protocols import build_protocol_handler

# The reference environment-step table: NIP with the prover speaking in even rounds, T=6,
# min rounds 1, and distinct reward values so every rule shows in the output.
TABLE_PARAMS = ProtocolConfig(
    verifier_first=False,
    max_message_rounds=6,
    min_message_rounds=1,
    prover_reward=1,
    verifier_reward=2,
    verifier_terminated_penalty=-4,
    verifier_no_guess_reward=8,
    verifier_incorrect_penalty=-16,
)
ROUNDS = [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]
DONE_IN = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0]
Y = [0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1]
VERIFIER_DECISION = [0, 0, 1, 2, 2, 2, 0, 0, 1, 1, 1, 1]
EXPECTED_DONE = [0, 1, 0, 0, 0, 1, 1, 1, 1, 1, 0, 1]
EXPECTED_REWARD = [
    (0, 0), (0, 2), (0, 0), (0, 8), (0, 0), (0, -4),
    (0, 0), (0, -16), (0, 0), (1, -16), (0, 0), (1, 2),
]  # fmt: skip


def test_nip_active_mask_alternates():
    handler = build_protocol_handler(ProtocolConfig(verifier_first=True))
    mask = handler.active_mask(torch.arange(8), torch.zeros(8, dtype=torch.long))
    assert mask.shape == (8, 2, 1)
    verifier_rounds = mask[:, handler.verifier_index, 0]
    assert verifier_rounds.tolist() == [r % 2 == 0 for r in range(8)]
    assert (mask[:, 0, 0] == ~verifier_rounds).all()
    handler = build_protocol_handler(ProtocolConfig(verifier_first=False))
    mask = handler.active_mask(torch.arange(8), torch.zeros(8, dtype=torch.long))
    assert mask[:, handler.verifier_index, 0].tolist() == [r % 2 == 1 for r in range(8)]


def test_single_verifier_step_table():
    handler = build_protocol_handler(TABLE_PARAMS)
    assert handler.agent_names == ("prover", "verifier")
    n = len(ROUNDS)
    decision = torch.stack(
        [torch.zeros(n, dtype=torch.long), torch.tensor(VERIFIER_DECISION)], dim=-1
    )
    done_in = torch.tensor(DONE_IN, dtype=torch.bool)
    step = handler.step(
        round=torch.tensor(ROUNDS),
        seed=torch.zeros(n, dtype=torch.long),
        decision=decision,
        y=torch.tensor(Y),
        done=done_in,
        agent_done=done_in[:, None].expand(n, 2),
        terminated=torch.zeros(n, dtype=torch.bool),
    )
    done = step.shared_done | step.terminated
    assert done.long().tolist() == EXPECTED_DONE
    assert step.reward.tolist() == [list(map(float, r)) for r in EXPECTED_REWARD]
    assert (step.agent_done == step.shared_done[:, None]).all()
    assert step.terminated.long().tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]


def test_premature_guess_counts_as_continue():
    handler = build_protocol_handler(
        ProtocolConfig(min_message_rounds=3, verifier_no_guess_reward=0.5)
    )
    step = handler.step(
        round=torch.tensor([0, 2]),
        seed=torch.zeros(2, dtype=torch.long),
        decision=torch.tensor([[0, 1], [0, 1]]),
        y=torch.tensor([1, 1]),
        done=torch.zeros(2, dtype=torch.bool),
        agent_done=torch.zeros(2, 2, dtype=torch.bool),
        terminated=torch.zeros(2, dtype=torch.bool),
    )
    assert step.shared_done.tolist() == [False, True]
    assert step.reward[:, 1].tolist() == [0.5, 1.0]
    assert step.reward[:, 0].tolist() == [0.0, 1.0]


def test_shared_reward_and_force_guess():
    handler = build_protocol_handler(
        ProtocolConfig(min_message_rounds=1, shared_reward=True, force_guess="y")
    )
    step = handler.step(
        round=torch.tensor([0, 0]),
        seed=torch.zeros(2, dtype=torch.long),
        decision=torch.tensor([[0, 2], [0, 2]]),
        y=torch.tensor([0, 1]),
        done=torch.zeros(2, dtype=torch.bool),
        agent_done=torch.zeros(2, 2, dtype=torch.bool),
        terminated=torch.zeros(2, dtype=torch.bool),
    )
    assert step.shared_done.all()
    assert step.reward.tolist() == [[1.0, 1.0], [1.0, 1.0]]
