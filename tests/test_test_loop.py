"""The test loop: sampled (not greedy) actions, seeded; tests during training; resumption."""

import pytest
import torch

from nip.evaluation import run_episodes
from nip.factory import build_scenario_instance, build_trainer
from nip.run import run_experiment
from tests.helpers import (
    build_tiny_trainer,
    read_metrics,
    run_settings,
    tiny_hyper_params,
)

# Random pairs instead of generated ones: these tests are about the trainer.
pytestmark = pytest.mark.usefixtures("trainer_datasets")


def test_test_samples_actions_seeded_by_the_experiment_seed(tmp_path):
    trainer = build_tiny_trainer(tmp_path)
    first = trainer._run_test_loop()
    assert first["test_greedy"] is False
    assert trainer._run_test_loop() == first  # same seed, same figures
    trainer.hyper_params.seed = 12  # the agents stay; only the test's sampling changes
    other = trainer._run_test_loop()
    assert other != first

    trainer.hyper_params.trainer.test_greedy = True
    greedy = trainer._run_test_loop()
    assert greedy["test_greedy"] is True
    trainer.hyper_params.seed = 11
    assert trainer._run_test_loop() == greedy  # greedy play does not depend on the seed
    assert greedy != first


def test_passes_are_independent_samples(tmp_path):
    trainer = build_tiny_trainer(tmp_path)
    torch.manual_seed(0)
    env, n = trainer.test_environment, len(trainer.scenario_instance.test_dataset)
    a = run_episodes(env, trainer.policy_operator, n)
    b = run_episodes(env, trainer.policy_operator, n)
    assert torch.equal(a.datapoint_id, b.datapoint_id)  # the same pairs ...
    assert not (torch.equal(a.decision, b.decision) and torch.equal(a.length, b.length))
    trainer.hyper_params.trainer.num_test_passes = 2
    stats = trainer._run_test_loop()
    assert stats["test_num_episodes"] == 2 * n


def test_tests_during_training_leave_training_unchanged(tmp_path):
    hp = tiny_hyper_params(tmp_path / "cache", num_iterations=3, test_interval=1)
    run_experiment(hp, run_settings(tmp_path / "tested"))
    hp = tiny_hyper_params(tmp_path / "cache", num_iterations=3, test_interval=0)
    run_experiment(hp, run_settings(tmp_path / "plain"))
    tested, plain = read_metrics(tmp_path / "tested"), read_metrics(tmp_path / "plain")
    test_rows = [r for r in tested if "test_mean_accuracy" in r]
    assert [r["iteration"] for r in test_rows] == [1, 2, 3]
    assert [r for r in tested if "test_mean_accuracy" not in r] == plain[:-1]
    assert test_rows[-1] == plain[-1]  # the final test too
    # The test-accuracy curve is in the plot.
    from nip.plotting import metrics_figure

    figure = metrics_figure(
        tmp_path / "tested" / "metrics.jsonl", ("prover", "verifier"), "isomorphic_fraction"
    )
    labels = [line.get_label() for ax in figure.axes for line in ax.get_lines()]
    assert "test" in labels and any(label.startswith("chance") for label in labels)


def test_resume_with_tests_during_training_is_exact(tmp_path):
    def hp():
        params = tiny_hyper_params(tmp_path / "cache", num_iterations=4, test_interval=1)
        params.checkpoint.interval = 2
        return params

    run_experiment(hp(), run_settings(tmp_path / "straight"))
    expected = read_metrics(tmp_path / "straight")
    assert len(expected) == 4 + 4  # every iteration, and a test after each

    s = run_settings(tmp_path / "crashed")
    trainer = build_trainer(hp(), build_scenario_instance(hp(), s), s)
    original = trainer._train_on_replay_buffer
    calls = []

    def crash_on_fourth():
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return original()

    trainer._train_on_replay_buffer = crash_on_fourth
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    # Lines after the checkpoint of iteration 2 (a train line and a test line) are redone.
    assert len(read_metrics(tmp_path / "crashed")) == 6
    run_experiment(hp(), s)
    assert read_metrics(tmp_path / "crashed") == expected
