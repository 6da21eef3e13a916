"""Solo-agent training: statistics by hand, bodies that really train, exact resumption."""

import math
import signal

import pytest
import torch
from torch import nn

from nip.checkpointing import load_checkpoint_file
from nip.config.trainer import SoloAgentTrainerConfig
from nip.errors import NipConfigError, NipInterrupted
from nip.factory import build_scenario_instance, build_trainer
from nip.run import run_experiment
from nip.trainers.solo_agent import heldout_split
from nip.trainers.supervised import SoloClassifiers, classification_stats
from tests.helpers import read_metrics, run_settings, tiny_hyper_params

pytestmark = pytest.mark.usefixtures("trainer_datasets")


def solo_hyper_params(cache, **overrides):
    hp = tiny_hyper_params(cache)
    hp.trainer = SoloAgentTrainerConfig(**{"num_epochs": 3, "batch_size": 16, **overrides})
    return hp


class ScriptedView:
    """A supervised view whose "body" sees nothing and whose heads are fixed constants."""

    def __init__(self, y, strata=None, logits=(2.0, 0.0)):
        self.y = torch.tensor(y)
        self.device = torch.device("cpu")
        self.policy = nn.Identity()
        self.strata = strata or {}
        self.label_names = ("non_isomorphic", "isomorphic")
        self._logits = torch.tensor(logits)

    def __len__(self):
        return len(self.y)

    def labels(self, idx):
        return self.y[idx]

    def representation(self, agent_index, idx):
        return torch.zeros(len(idx), 1)

    def solo_head(self, name, seed):
        head = nn.Linear(1, 2)
        with torch.no_grad():
            head.weight.zero_()
            head.bias.copy_(self._logits)
        return head

    def body_parameter_groups(self, name, lr, use_factors):
        return []


def test_statistics_of_a_classifier_that_always_rejects():
    """Logits (2, 0) for every pair: it answers "not isomorphic" to everything."""
    y = [1, 1, 1, 0, 0, 1, 0, 1]  # 5 isomorphic, 3 not
    wl = torch.tensor([-1, -1, -1, 1, 2, -1, 2, -1])
    view = ScriptedView(y, {"wl_score": wl})
    classifiers = SoloClassifiers(
        view, ("verifier",), (True,), seed=0, lr=1.0, body_lr_factors=True
    )
    stats = classification_stats(classifiers, view, torch.arange(8), 3, "test_", view.strata)
    assert stats["verifier.test_accuracy"] == 3 / 8
    assert stats["verifier.test_accuracy_isomorphic"] == 0.0
    assert stats["verifier.test_accuracy_non_isomorphic"] == 1.0
    assert stats["verifier.test_accuracy_wl_score_1"] == 1.0
    assert stats["verifier.test_accuracy_wl_score_2"] == 1.0
    assert stats["test_isomorphic_fraction"] == 5 / 8 and stats["test_num_examples"] == 8
    # Cross-entropy by hand: -log softmax(2, 0)[label].
    p_reject = math.exp(2) / (math.exp(2) + 1)
    expected = (5 * -math.log(1 - p_reject) + 3 * -math.log(p_reject)) / 8
    assert stats["verifier.test_loss"] == pytest.approx(expected, rel=1e-6)
    # Only the examples asked for count: the isomorphic ones alone score 0.
    some = classification_stats(classifiers, view, torch.tensor([0, 1, 5]), 2, "", None)
    assert some["verifier.accuracy"] == 0.0 and "verifier.accuracy_non_isomorphic" not in some


def test_heldout_split_is_seeded_disjoint_and_complete():
    train, heldout = heldout_split(10, 0.2, seed=3)
    assert len(heldout) == 2 and len(train) == 8
    assert sorted(torch.cat([train, heldout]).tolist()) == list(range(10))
    again = heldout_split(10, 0.2, seed=3)
    assert torch.equal(again[1], heldout)
    other_seeds = {tuple(heldout_split(10, 0.2, seed=s)[1].tolist()) for s in range(5)}
    assert len(other_seeds) > 1
    assert len(heldout_split(10, 0.0, seed=3)[1]) == 0
    with pytest.raises(ValueError, match="at least one example on each side"):
        heldout_split(3, 0.9, seed=0)


def test_solo_run_trains_bodies_and_writes_its_metrics(tmp_path):
    hp = solo_hyper_params(tmp_path / "cache")
    settings = run_settings(tmp_path / "run")
    trainer = build_trainer(hp, build_scenario_instance(hp, settings), settings)
    assert trainer.scenario_instance.train_environment is None  # no episodes to play
    bodies = trainer.scenario_instance.combined_policy.bodies
    before = {k: v.clone() for k, v in bodies.state_dict().items()}
    trainer.train()
    after = bodies.state_dict()
    unchanged = sorted(k for k in before if torch.equal(before[k], after[k]))
    # Gradients reach every part of every body (the GNN's first layer too), except the
    # weights that multiply the message history, which is all zeros before any message.
    assert unchanged == ["prover.gnn.input.weight", "verifier.gnn.input.weight"]

    rows = read_metrics(tmp_path / "run")
    assert [r["iteration"] for r in rows] == [0, 1, 2, 3]
    assert [r.get("epoch") for r in rows[:3]] == [0, 1, 2]
    for agent in ("prover", "verifier"):
        for key in ("loss", "accuracy", "heldout_loss", "heldout_accuracy"):
            assert all(0 <= r[f"{agent}.{key}"] for r in rows[:3])
        assert 0 <= rows[-1][f"{agent}.test_accuracy"] <= 1
    # 120 training pairs, 24 held out; the test split is the scenario's (30 pairs).
    assert rows[0]["heldout_num_examples"] == 24 and rows[-1]["test_num_examples"] == 30
    state = load_checkpoint_file(tmp_path / "run" / "checkpoints" / "state.pt")
    assert state["iteration"] == 3 and state["tested"] and "solo_heads" in state
    assert (tmp_path / "run" / "training_curves.png").stat().st_size > 1000


def test_frozen_agent_is_not_trained(tmp_path):
    hp = solo_hyper_params(tmp_path / "cache")
    hp.scenario.prover.frozen = True
    settings = run_settings(tmp_path / "run")
    trainer = build_trainer(hp, build_scenario_instance(hp, settings), settings)
    prover = trainer.scenario_instance.combined_policy.bodies["prover"]
    before = {k: v.clone() for k, v in prover.state_dict().items()}
    trainer.train()
    assert all(torch.equal(v, prover.state_dict()[k]) for k, v in before.items())
    rows = read_metrics(tmp_path / "run")
    assert all(not any(k.startswith("prover.") for k in r) for r in rows)
    assert "verifier.test_accuracy" in rows[-1]


def test_same_seed_same_metrics(tmp_path):
    run_experiment(solo_hyper_params(tmp_path / "cache"), run_settings(tmp_path / "a"))
    run_experiment(solo_hyper_params(tmp_path / "cache"), run_settings(tmp_path / "b"))
    assert read_metrics(tmp_path / "a") == read_metrics(tmp_path / "b")
    other = solo_hyper_params(tmp_path / "cache")
    other.seed = 12
    run_experiment(other, run_settings(tmp_path / "c"))
    assert read_metrics(tmp_path / "a")[0] != read_metrics(tmp_path / "c")[0]


def test_stop_signal_and_extension_resume_exactly(tmp_path):
    cache = tmp_path / "cache"
    run_experiment(solo_hyper_params(cache, num_epochs=4), run_settings(tmp_path / "straight"))
    expected = read_metrics(tmp_path / "straight")

    # SIGTERM in the middle of epoch 2: the checkpoint of the epoch boundary is written.
    hp = solo_hyper_params(cache, num_epochs=4)
    s = run_settings(tmp_path / "stopped")
    trainer = build_trainer(hp, build_scenario_instance(hp, s), s)
    original = trainer.classifiers.train_epoch
    calls = []

    def signal_in_third_epoch(order, batch_size, after_step=None):
        calls.append(1)
        if len(calls) == 3:

            def after_step_with_signal():
                signal.raise_signal(signal.SIGTERM)
                after_step()

            return original(order, batch_size, after_step_with_signal)
        return original(order, batch_size, after_step)

    trainer.classifiers.train_epoch = signal_in_third_epoch
    with pytest.raises(NipInterrupted, match="during epoch 2; a checkpoint after 2 completed"):
        trainer.train()
    assert load_checkpoint_file(s.run_dir / "checkpoints" / "state.pt")["iteration"] == 2
    run_experiment(hp, s)
    assert read_metrics(tmp_path / "stopped") == expected

    # Extending a finished run by epochs continues exactly (its first test line stays).
    run_experiment(solo_hyper_params(cache, num_epochs=2), run_settings(tmp_path / "extended"))
    first_test = read_metrics(tmp_path / "extended")[-1]
    run_experiment(solo_hyper_params(cache, num_epochs=4), run_settings(tmp_path / "extended"))
    assert read_metrics(tmp_path / "extended") == [*expected[:2], first_test, *expected[2:]]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"test_size": 1.0}, "trainer.test_size must be in [0, 1)"),
        ({"num_epochs": 0}, "trainer.num_epochs must be at least 1"),
        ({"lr": 0.0}, "trainer.lr must be positive"),
    ],
)
def test_bad_settings_are_refused(tmp_path, overrides, message):
    from nip.config import validate_hyper_params

    with pytest.raises(NipConfigError, match=message.replace("[", r"\[").replace(")", r"\)")):
        validate_hyper_params(solo_hyper_params(tmp_path / "cache", **overrides))


def test_a_schedule_does_not_apply(tmp_path):
    from nip.config import validate_hyper_params
    from nip.config.schedule import AlternatingScheduleConfig

    hp = solo_hyper_params(tmp_path / "cache")
    hp.schedule = AlternatingScheduleConfig()
    with pytest.raises(NipConfigError, match="schedule=alternating does not apply"):
        validate_hyper_params(hp)
