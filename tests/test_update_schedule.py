"""Update schedules: which agents learn in which iteration, and what "not learning" means."""

import copy

import pytest
import torch

from nip.config.schedule import (
    AlternatingScheduleConfig,
    ConstantScheduleConfig,
    PeriodicScheduleConfig,
    agents_updating,
    check_schedule,
)
from nip.errors import NipConfigError
from tests.helpers import read_metrics, run_settings, tiny_hyper_params

AGENTS = ("verifier", "prover0", "prover1")
PROVERS = ("prover0", "prover1")


def _table(schedule, iterations: int = 6) -> list[tuple[bool, ...]]:
    return [agents_updating(schedule, AGENTS, PROVERS, t) for t in range(iterations)]


def test_constant_updates_everyone():
    assert _table(ConstantScheduleConfig()) == [(True, True, True)] * 6


def test_periodic_windows_repeat_and_unlisted_agents_always_update():
    schedule = PeriodicScheduleConfig(period=3, windows={"prover0": [0, 1], "prover1": [1, 3]})
    assert (
        _table(schedule)
        == [
            (True, True, False),
            (True, False, True),
            (True, False, True),
        ]
        * 2
    )


def test_alternating_verifier_first_then_provers():
    schedule = AlternatingScheduleConfig(period=3, verifier_iterations=1)
    assert _table(schedule) == [(True, False, False), (False, True, True), (False, True, True)] * 2
    schedule = AlternatingScheduleConfig(period=3, verifier_iterations=1, verifier_first=False)
    assert _table(schedule) == [(False, True, True), (False, True, True), (True, False, False)] * 2


@pytest.mark.parametrize(
    ("schedule", "learning", "message"),
    [
        (PeriodicScheduleConfig(period=0), (True,) * 3, "schedule.period must be at least 1"),
        (
            PeriodicScheduleConfig(period=2, windows={"prover": [0, 1]}),
            (True,) * 3,
            "not an agent of this protocol",
        ),
        (
            PeriodicScheduleConfig(period=2, windows={"prover0": [1, 5]}),
            (True,) * 3,
            "0 <= start < stop <= period",
        ),
        (
            PeriodicScheduleConfig(
                period=2, windows={"verifier": [0, 1], "prover0": [0, 1], "prover1": [0, 1]}
            ),
            (True,) * 3,
            "in iteration 1 of each cycle of the schedule no learning agent updates",
        ),
        (
            AlternatingScheduleConfig(period=2, verifier_iterations=2),
            (True,) * 3,
            "between 1 and period - 1",
        ),
        (
            AlternatingScheduleConfig(period=2, verifier_iterations=1),
            (True, False, False),  # frozen provers: their turns would train nobody
            "in iteration 1 of each cycle",
        ),
    ],
)
def test_bad_schedules_are_refused(schedule, learning, message):
    with pytest.raises(NipConfigError, match=message):
        check_schedule(schedule, AGENTS, PROVERS, learning)


def _trainer(tmp_path, schedule, iterations):
    from nip.factory import build_scenario_instance, build_trainer

    hp = tiny_hyper_params(tmp_path / "cache", num_iterations=iterations)
    hp.schedule = schedule
    settings = run_settings(tmp_path / "run")
    return build_trainer(hp, build_scenario_instance(hp, settings), settings)


def _params(trainer, agent: str) -> dict[str, torch.Tensor]:
    instance = trainer.scenario_instance
    return {
        f"{prefix}.{key}": value.detach().clone()
        for prefix, module in (("p", instance.combined_policy), ("v", instance.combined_value))
        for key, value in module.named_parameters()
        if key.split(".")[1] == agent
    }


def _adam_state(trainer, agent: str) -> list[dict]:
    state = trainer.optimizer.state
    groups = trainer.param_group_freezer.agent_groups[agent]
    return [copy.deepcopy(state.get(p, {})) for g in groups for p in g["params"]]


def test_off_turn_agent_takes_no_step_and_keeps_its_adam_moments(tmp_path, trainer_datasets):
    """Alternating, period 2: iteration 0 trains the verifier only, iteration 1 the prover
    only. The prover's parameters and Adam moments do not move on the verifier's turn, and
    the verifier's do not move on the prover's."""
    schedule = AlternatingScheduleConfig(period=2, verifier_iterations=1)
    trainer = _trainer(tmp_path, schedule, iterations=1)
    prover0, verifier0 = _params(trainer, "prover"), _params(trainer, "verifier")
    trainer.train()
    prover1, verifier1 = _params(trainer, "prover"), _params(trainer, "verifier")
    assert all(torch.equal(prover1[k], v) for k, v in prover0.items())
    assert any(not torch.equal(verifier1[k], v) for k, v in verifier0.items())
    assert all(s == {} for s in _adam_state(trainer, "prover"))  # never stepped
    verifier_moments = _adam_state(trainer, "verifier")
    assert all(s for s in verifier_moments)

    trainer = _trainer(tmp_path, schedule, iterations=2)  # resumes, then the prover's turn
    trainer.train()
    prover2, verifier2 = _params(trainer, "prover"), _params(trainer, "verifier")
    assert any(not torch.equal(prover2[k], v) for k, v in prover1.items())
    assert all(torch.equal(verifier2[k], v) for k, v in verifier1.items())
    for before, after in zip(verifier_moments, _adam_state(trainer, "verifier"), strict=True):
        assert torch.equal(before["exp_avg"], after["exp_avg"])
        assert torch.equal(before["step"], after["step"])
    # Every agent's groups are back in the optimizer, in their original order.
    assert trainer.optimizer.param_groups == trainer.param_group_freezer.all_groups
    rows = [r for r in read_metrics(tmp_path / "run") if "mean_accuracy" in r]
    assert [(r["verifier.updated"], r["prover.updated"]) for r in rows] == [(1.0, 0.0), (0.0, 1.0)]
    assert "prover.loss_objective" not in rows[0] and "verifier.loss_objective" not in rows[1]


def test_a_scheduled_run_resumes_exactly(tmp_path, trainer_datasets):
    schedule = PeriodicScheduleConfig(period=3, windows={"prover": [1, 3]})
    straight = _trainer(tmp_path / "a", schedule, iterations=4)
    straight.train()
    _trainer(tmp_path / "b", schedule, iterations=2).train()
    _trainer(tmp_path / "b", schedule, iterations=4).train()
    # Training lines only: the extended run also keeps the test line of its earlier end.
    a = [r for r in read_metrics(tmp_path / "a" / "run") if "mean_accuracy" in r]
    b = [r for r in read_metrics(tmp_path / "b" / "run") if "mean_accuracy" in r]
    assert a == b and len(a) == 4


def test_checkpoints_from_before_schedules_and_agent_flags_still_resume():
    """A checkpoint's science without the fields added since is the same experiment as the
    fields' neutral values."""
    from nip.config.root import science_dict, with_added_science_fields

    current = science_dict(tiny_hyper_params("unused"))
    old = copy.deepcopy(current)
    del old["schedule"]
    for role in ("prover", "verifier"):
        del old["scenario"][role]["frozen"], old["scenario"][role]["random"]
    assert with_added_science_fields(old) == current
    current["scenario"]["prover"]["random"] = True
    assert with_added_science_fields(old) != current
