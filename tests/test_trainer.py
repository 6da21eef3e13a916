"""The PPO trainer: optimizer groups, GAE shapes, checkpoints, exact resume, determinism."""

import dataclasses

import numpy as np
import pytest
import torch
from torchrl.objectives.value import GAE

from nip.checkpointing import load_checkpoint_file
from nip.config.protocol import ProtocolConfig
from nip.errors import NipCheckpointError
from nip.factory import build_scenario_instance, build_trainer
from nip.run import run_experiment
from nip.trainers.ppo import AGENT_KEYS
from tests.helpers import (
    build_tiny_trainer,
    interrupt_on_call,
    read_metrics,
    run_settings,
    tiny_hyper_params,
)

# Random pairs instead of generated ones: these tests are about the trainer.
pytestmark = pytest.mark.usefixtures("trainer_datasets")


def test_one_iteration_shapes_and_per_agent_advantages(tmp_path):
    trainer = build_tiny_trainer(tmp_path)
    collector, _ = trainer._get_data_collectors()
    data = next(iter(collector))
    collector.shutdown()
    num_envs = 64 // trainer.max_message_rounds
    assert data.batch_size == (num_envs, trainer.max_message_rounds)
    assert data["agents", "sample_log_prob"].shape == (num_envs, 8, 2)
    trainer._estimate_advantages(data)
    for key in ("advantage", "value_target", "state_value"):
        assert data["agents", key].shape == (num_envs, 8, 2, 1)
    # Per-agent GAE: each agent's advantage uses only its own rewards and values.
    reward = data["next", "agents", "reward"].clone()
    data["next", "agents", "reward"][..., 0, :] += 10.0
    trainer._estimate_advantages(data)
    changed = data["agents", "advantage"].clone()
    data["next", "agents", "reward"] = reward
    trainer._estimate_advantages(data)
    assert not torch.allclose(changed[..., 0, :], data["agents", "advantage"][..., 0, :])
    torch.testing.assert_close(changed[..., 1, :], data["agents", "advantage"][..., 1, :])


@pytest.mark.parametrize("zero_knowledge", [False, True])
@pytest.mark.parametrize("bootstrap", [False, True])
def test_single_value_pass_matches_two_pass_gae(tmp_path, zero_knowledge, bootstrap):
    """One value pass over [obs, last next obs] gives what GAE's own two passes give.

    Under zero knowledge an agent can finish before the episode ends, which exercises
    per-agent terminal flags. With ``advantage.bootstrap_at_decisions`` (the original's
    semantics) the values after decisions are read as well.
    """
    hp = tiny_hyper_params(tmp_path / "cache")
    hp = dataclasses.replace(hp, protocol=ProtocolConfig(zero_knowledge=zero_knowledge))
    hp.advantage.bootstrap_at_decisions = bootstrap
    s = run_settings(tmp_path / "run")
    trainer = build_trainer(hp, build_scenario_instance(hp, s), s)
    collector, _ = trainer._get_data_collectors()
    iterator = iter(collector)
    next(iterator)  # a second batch starts mid-episode for some environments
    data = next(iterator)
    collector.shutdown()
    assert data["next", "done"].any()
    ours = data.clone()
    trainer._estimate_advantages(ours)
    reference = data.clone()
    trainer._prepare_for_advantage(reference)
    gae = GAE(
        gamma=hp.advantage.gamma,
        lmbda=hp.advantage.lmbda,
        value_network=trainer.value_operator,
        average_gae=False,
        deactivate_vmap=True,
    )
    gae.set_keys(**{k: v for k, v in AGENT_KEYS.items() if k not in ("action", "sample_log_prob")})
    with torch.no_grad():
        gae(reference)
    for key in ("state_value", "advantage", "value_target"):
        torch.testing.assert_close(ours["agents", key], reference["agents", key])
    # At a decision that ends an episode the target is the reward alone, unless bootstrapped.
    decided = data["next", "done"][..., 0] & ~data["next", "terminated"][..., 0]
    assert decided.any()
    target = ours["agents", "value_target"][decided][:, 1, 0]  # the verifier's
    reward = ours["next", "agents", "reward"][decided][:, 1, 0]
    assert torch.allclose(target, reward, atol=1e-6) != bootstrap


def test_off_turn_log_probs_are_masked(tmp_path):
    trainer = build_tiny_trainer(tmp_path)
    collector, _ = trainer._get_data_collectors()
    data = next(iter(collector))
    collector.shutdown()
    node_active = data["agents", "node_active"]
    # Verifier first: in round 0 only the verifier speaks, so the prover's log-prob is 0.
    round0 = data["round"] == 0
    assert round0.any()
    assert not node_active[round0][:, 0].any()
    assert (data["agents", "sample_log_prob"][round0][:, 0] == 0).all()
    assert (data["agents", "sample_log_prob"][round0][:, 1] < 0).all()


def test_unmasked_log_probs_count_every_action(tmp_path):
    """loss.mask_ineffective_actions=false: the original's log-probs over every sampled
    action, so the prover's off-turn frames carry log-probability too."""
    trainer = build_tiny_trainer(tmp_path)
    trainer.hyper_params.loss.mask_ineffective_actions = False
    trainer._build_operators()
    collector, _ = trainer._get_data_collectors()
    data = next(iter(collector))
    collector.shutdown()
    round0 = data["round"] == 0
    assert (data["agents", "sample_log_prob"][round0][:, 0] < 0).all()


def test_optimizer_groups_cover_loss_parameters(tmp_path):
    trainer = build_tiny_trainer(tmp_path)
    # Progress-bar declarations: training iterations plus test passes.
    assert trainer.get_total_num_iterations() == 2 + 1
    grouped = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    for name, p in trainer.loss_module.named_parameters():
        if p.requires_grad:
            assert id(p) in grouped, name
    names = {g["name"] for g in trainer.optimizer.param_groups}
    assert {"prover.actor_gnn", "verifier.critic_head"} <= names
    assert all(g["lr"] == pytest.approx(3e-4) for g in trainer.optimizer.param_groups)


def test_param_freezer_stops_gradients(tmp_path):
    trainer = build_tiny_trainer(tmp_path)
    freezer = trainer.param_group_freezer
    prover_params = [p for g in freezer.agent_groups["prover"] for p in g["params"]]
    freezer.freeze("prover")
    assert all(not p.requires_grad for p in prover_params)
    in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert not any(id(p) in in_optimizer for p in prover_params)
    freezer.unfreeze("prover")
    assert all(p.requires_grad for p in prover_params)
    assert len(trainer.optimizer.param_groups) == sum(len(v) for v in freezer.agent_groups.values())


def test_run_writes_metrics_checkpoint_and_plot(tmp_path):
    hp = tiny_hyper_params(tmp_path / "cache")
    run_experiment(hp, run_settings(tmp_path / "run"))
    rows = read_metrics(tmp_path / "run")
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    assert "mean_accuracy" in rows[0] and "verifier.mean_episode_reward" in rows[0]
    assert "prover.loss_objective" in rows[0] and "loss_critic" in rows[0]
    assert 0 <= rows[-1]["test_mean_accuracy"] <= 1
    assert (tmp_path / "run" / "training_curves.png").stat().st_size > 1000
    state = load_checkpoint_file(tmp_path / "run" / "checkpoints" / "state.pt")
    assert state["iteration"] == 2 and state["tested"]


def test_same_seed_same_metrics_and_seed_matters(tmp_path):
    run_experiment(tiny_hyper_params(tmp_path / "c"), run_settings(tmp_path / "a"))
    run_experiment(tiny_hyper_params(tmp_path / "c"), run_settings(tmp_path / "b"))
    assert read_metrics(tmp_path / "a") == read_metrics(tmp_path / "b")
    other = tiny_hyper_params(tmp_path / "c")
    other.seed = 12
    run_experiment(other, run_settings(tmp_path / "other"))
    assert read_metrics(tmp_path / "a")[0] != read_metrics(tmp_path / "other")[0]


def test_stop_and_resume_is_exact(tmp_path):
    """Extending a finished run, and resuming after a crash, reproduce the straight run."""
    cache = tmp_path / "cache"
    run_experiment(tiny_hyper_params(cache, num_iterations=4), run_settings(tmp_path / "straight"))
    expected = read_metrics(tmp_path / "straight")

    run_experiment(tiny_hyper_params(cache, num_iterations=2), run_settings(tmp_path / "extended"))
    first_test = read_metrics(tmp_path / "extended")[-1]
    run_experiment(tiny_hyper_params(cache, num_iterations=4), run_settings(tmp_path / "extended"))
    # The extended run keeps the test of its first end, at iteration 2, and then continues
    # exactly as the straight run.
    assert first_test["iteration"] == 2 and "test_mean_accuracy" in first_test
    assert read_metrics(tmp_path / "extended") == [*expected[:2], first_test, *expected[2:]]

    # A crash in the middle of iteration 3 (after its metrics line of iteration 2 was
    # written but before the checkpoint) loses nothing once resumed.
    hp = tiny_hyper_params(cache, num_iterations=4)
    s = run_settings(tmp_path / "crashed")
    trainer = build_trainer(hp, build_scenario_instance(hp, s), s)

    def tear_metrics_line():
        (s.run_dir / "metrics.jsonl").open("a").write('{"torn": ')

    interrupt_on_call(trainer, "_train_on_replay_buffer", 3, before=tear_metrics_line)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert load_checkpoint_file(s.run_dir / "checkpoints" / "state.pt")["iteration"] == 2
    run_experiment(hp, s)
    assert read_metrics(tmp_path / "crashed") == expected


def test_changed_science_is_refused_and_keeps_checkpoint(tmp_path):
    cache = tmp_path / "cache"
    run_experiment(tiny_hyper_params(cache), run_settings(tmp_path / "run"))
    checkpoint = tmp_path / "run" / "checkpoints" / "state.pt"
    before = checkpoint.read_bytes()
    metrics_before = (tmp_path / "run" / "metrics.jsonl").read_text()
    changed = tiny_hyper_params(cache, lr=1e-3, num_iterations=3)
    with pytest.raises(NipCheckpointError, match="trainer.lr"):
        run_experiment(changed, run_settings(tmp_path / "run"))
    assert checkpoint.read_bytes() == before
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == metrics_before


def test_extending_an_annealed_run_is_refused(tmp_path):
    """With anneal_lr the schedule depends on num_iterations: extending would raise the
    learning rate again, so it is refused and the checkpoint is left as it was."""
    run_experiment(
        tiny_hyper_params(tmp_path / "cache", anneal_lr=True), run_settings(tmp_path / "run")
    )
    checkpoint = (tmp_path / "run" / "checkpoints" / "state.pt").read_bytes()
    hp = tiny_hyper_params(tmp_path / "cache", anneal_lr=True, num_iterations=4)
    with pytest.raises(NipCheckpointError, match="anneal_lr"):
        run_experiment(hp, run_settings(tmp_path / "run"))
    assert (tmp_path / "run" / "checkpoints" / "state.pt").read_bytes() == checkpoint
    # Without annealing the same extension is fine.
    run_experiment(tiny_hyper_params(tmp_path / "cache"), run_settings(tmp_path / "plain"))
    run_experiment(
        tiny_hyper_params(tmp_path / "cache", num_iterations=3), run_settings(tmp_path / "plain")
    )


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    checkpoint = tmp_path / "run" / "checkpoints" / "state.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(NipCheckpointError, match="cannot read checkpoint"):
        run_experiment(tiny_hyper_params(tmp_path / "cache"), run_settings(tmp_path / "run"))
    assert checkpoint.read_bytes() == b"not a checkpoint"


def test_pretraining_trains_bodies_and_is_cached(tmp_path):
    overrides = dict(pretrain_agents=True, pretrain_epochs=2, pretrain_batch_size=32)
    trainer = build_tiny_trainer(tmp_path, **overrides)
    policy = trainer.scenario_instance.combined_policy
    before = {k: v.clone() for k, v in policy.bodies.state_dict().items()}
    trainer._pretrain_agents()
    after = policy.bodies.state_dict()
    for agent in ("prover", "verifier"):
        gnn_keys = [k for k in before if k.startswith(f"{agent}.gnn")]
        assert any(not torch.equal(before[k], after[k]) for k in gnn_keys), agent
    cached = list((tmp_path / "cache" / "pretrained").glob("*.pt"))
    assert len(cached) == 1

    again = build_tiny_trainer(tmp_path, **overrides)
    again._pretrain_agents()
    for k, v in again.scenario_instance.combined_policy.bodies.state_dict().items():
        torch.testing.assert_close(v, after[k])


def test_observation_normalisation_does_not_collapse(tmp_path):
    """With min_message_rounds=1 many episodes end at once; the statistics stay sane."""
    hp = tiny_hyper_params(tmp_path / "cache")
    hp.protocol.min_message_rounds = 1
    s = run_settings(tmp_path / "run")
    trainer = build_trainer(hp, build_scenario_instance(hp, s), s)
    stats = trainer._observation_norm_state()
    for key in ("x", "message"):
        assert 0 < stats[key]["loc"].item() < 0.5
        assert 0.01 < stats[key]["scale"].item() < 1.0
    # Train and test environments share them.
    train_norm, test_norm = trainer.observation_norms["x"]
    assert torch.equal(train_norm.scale, test_norm.scale)


def test_new_run_starts_from_base_run_checkpoint(tmp_path):
    run_experiment(tiny_hyper_params(tmp_path / "cache"), run_settings(tmp_path / "base"))
    base_state = load_checkpoint_file(tmp_path / "base" / "checkpoints" / "state.pt")
    # The layout of a downloaded checkpoint artifact: a folder holding state.pt.
    artifact_dir = tmp_path / "artifact"
    artifact_dir.mkdir()
    (artifact_dir / "state.pt").write_bytes((tmp_path / "base/checkpoints/state.pt").read_bytes())
    hp = tiny_hyper_params(tmp_path / "cache")
    hp.base_run.run_id = str(artifact_dir)
    s = run_settings(tmp_path / "new")
    s.base_run_checkpoint = hp.base_run.run_id
    trainer = build_trainer(hp, build_scenario_instance(hp, s), s)
    assert trainer.state.iteration == 0  # a new run, not a resumption
    policy = trainer.scenario_instance.combined_policy.state_dict()
    for key, value in base_state["policy"].items():
        torch.testing.assert_close(policy[key], value)
    assert trainer._observation_norm_state() == base_state["observation_norm"]


def test_unknown_base_run_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    hp = tiny_hyper_params(tmp_path / "cache")
    s = run_settings(tmp_path / "new")
    s.base_run_checkpoint = "someone/some-project/no-such-run"
    try:
        with pytest.raises(NipCheckpointError, match="cannot fetch the checkpoint of base run"):
            build_trainer(hp, build_scenario_instance(hp, s), s)
    finally:
        import wandb

        wandb.teardown()  # forget the settings wandb cached with this test's HOME
    assert not (tmp_path / "new" / "checkpoints").exists()


def test_rollout_samples_are_complete_episodes(tmp_path):
    from nip.episodes import agent_colours
    from nip.rollout_samples import sample_episodes

    trainer = build_tiny_trainer(tmp_path)
    collector, _ = trainer._get_data_collectors()
    data = next(iter(collector))
    collector.shutdown()
    before = torch.get_rng_state()
    samples = sample_episodes(
        data,
        trainer.protocol_handler,
        trainer.scenario,
        5,
        torch.Generator().manual_seed(0),
    )
    assert torch.equal(torch.get_rng_state(), before)
    assert 0 < len(samples) <= 5
    for s in samples:
        assert s["decision"] in ("reject", "accept", "none")
        # One message per round: the transcript names the speaker of every round.
        assert len(s["transcript"].split("; ")) == s["length"]
        assert s["transcript"].startswith("r0 verifier @main: ")
        assert set(s["returns"]) == {"prover", "verifier"}
        assert set(s["example"]) == {"graph_a_edges", "graph_b_edges"}
        assert s["example"]["graph_a_edges"].startswith("[(")
        # The episode's picture: the speakers' colours appear (verifier round 0, prover 1).
        picture = s["pictures"]["episode"]
        assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
        speakers = {"verifier"} if s["length"] == 1 else {"verifier", "prover"}
        for agent, colour in agent_colours(("prover", "verifier")).items():
            rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
            count = int((np.abs(picture.astype(int) - rgb).max(-1) <= 12).sum())
            assert (count > 50) == (agent in speakers), (agent, count)
