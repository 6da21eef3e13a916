"""trainer=spg on the GI model: episode surrogates, real corrections, every variant runs."""

import dataclasses

import pytest
import torch

from nip.config.trainer import SpgTrainerConfig
from nip.errors import NipConfigError
from nip.objectives.dice import episode_cumsum
from nip.objectives.opponent_shaping import VARIANTS, flat_grad
from tests.helpers import read_metrics, run_settings, tiny_hyper_params


def test_episode_cumsum_restarts_at_episode_starts():
    values = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    starts = torch.tensor([[False, True, False, True], [True, False, False, False]])
    # Row 0: frame 0 continues an episode from before the batch; new episodes at 1 and 3.
    expected = torch.tensor([[1.0, 2.0, 5.0, 4.0], [5.0, 11.0, 18.0, 26.0]])
    assert torch.equal(episode_cumsum(values, starts), expected)


def _trainer(tmp_path, variant: str = "pspg", iterations: int = 2, run: str = "run", **change):
    from nip.factory import build_scenario_instance, build_trainer

    hp = tiny_hyper_params(tmp_path / "cache", num_iterations=iterations)
    settings_dict = dataclasses.asdict(hp.trainer)
    settings_dict.update(name="spg", variant=variant, **change)
    hp.trainer = SpgTrainerConfig(**settings_dict)
    settings = run_settings(tmp_path / run)
    return build_trainer(hp, build_scenario_instance(hp, settings), settings)


def _rows(trainer):
    """A collected batch with advantages, as the trainer's minibatch of whole rows."""
    data = next(iter(trainer._get_data_collectors()[0]))
    trainer._estimate_advantages(data)
    return data


def test_surrogate_gradient_is_the_policy_gradient_at_collection_time(tmp_path, trainer_datasets):
    """At the collection-time parameters, d(-J_i)/d theta_k = -mean over i's frames of
    A_i,t d l_t / d theta_k, for every pair of agents (here: PPO's gradient)."""
    from nip.objectives.ppo import AGENT_DONE_KEY, masked_standardize

    trainer = _trainer(tmp_path)
    rows = _rows(trainer)
    learners = [0, 1]
    losses = trainer.surrogate_losses(rows, learners)
    flat = rows.reshape(-1)
    log_prob = trainer.policy_operator.get_dist(flat).log_prob(flat["agents", "action"])
    joint = log_prob.sum(-1)
    playing = ~flat[AGENT_DONE_KEY]
    advantage = masked_standardize(flat["agents", "advantage"], playing[..., None])[..., 0]
    for i in learners:
        mine = playing[:, i].float()
        linear = -(joint * advantage[:, i].detach() * mine).sum() / mine.sum()
        for k, name in enumerate(trainer.agent_names):
            params = trainer._actor_parameters(name)
            assert torch.allclose(
                flat_grad(losses[i], params), flat_grad(linear, params), rtol=1e-4, atol=1e-6
            ), (i, k)


def test_the_provers_gradient_depends_on_the_verifiers_policy(tmp_path, trainer_datasets):
    """The mixed second derivative that every correction is made of is not zero on the GI
    model: the verifier's earlier messages shape the prover's objective."""
    trainer = _trainer(tmp_path, variant="spg")
    rows = _rows(trainer)
    prover, verifier = trainer.agent_names.index("prover"), trainer.agent_names.index("verifier")
    losses = trainer.surrogate_losses(rows, [prover, verifier])
    prover_params = trainer._actor_parameters("prover")
    verifier_params = trainer._actor_parameters("verifier")
    gradient = flat_grad(losses[0], prover_params, create_graph=True)
    direction = torch.randn(gradient.shape, generator=torch.Generator().manual_seed(0))
    mixed = flat_grad(gradient @ direction, verifier_params)
    assert mixed.abs().max() > 1e-6


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_trains_and_only_the_leader_is_corrected(tmp_path, trainer_datasets, variant):
    trainer = _trainer(tmp_path, variant=variant, iterations=1)
    trainer.train()
    [row] = [r for r in read_metrics(tmp_path / "run") if "mean_accuracy" in r]
    assert row["verifier.shaping_correction_norm"] > 0  # the leader
    assert row["prover.shaping_correction_norm"] == 0  # the follower follows its gradient


def test_a_near_singular_follower_hessian_stops_the_run_with_advice(
    tmp_path, trainer_datasets, monkeypatch
):
    """The guard's refusal (forced here: the Nyström product refuses any gain, which a real
    run reaches only near an eigenvalue -rho) stops the run in one line that says what to
    change, and writes no checkpoint."""
    from nip.errors import NipRunError
    from nip.objectives import opponent_shaping

    real = opponent_shaping.nystrom_ihvp
    monkeypatch.setattr(
        opponent_shaping, "nystrom_ihvp", lambda *a, **k: real(*a, **{**k, "max_gain": 0.0})
    )
    trainer = _trainer(tmp_path, "spg", iterations=1)
    with pytest.raises(NipRunError) as caught:
        trainer.train()
    message = str(caught.value)
    assert "training diverged at iteration 0 (the follower's H + rho I is near-singular" in message
    assert "no checkpoint had been written yet" in message
    assert message.endswith("; raise trainer.ihvp_rho or trainer.ihvp_max_gain")
    checkpoints = tmp_path / "run" / "checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.iterdir())


def test_spg_resumes_exactly(tmp_path, trainer_datasets):
    _trainer(tmp_path, "psos", iterations=3, run="straight").train()
    _trainer(tmp_path, "psos", iterations=1, run="resumed").train()
    _trainer(tmp_path, "psos", iterations=3, run="resumed").train()
    straight = [r for r in read_metrics(tmp_path / "straight") if "mean_accuracy" in r]
    resumed = [r for r in read_metrics(tmp_path / "resumed") if "mean_accuracy" in r]
    assert straight == resumed and len(straight) == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"variant": "nonsense"}, "trainer.variant must be one of"),
        ({"ihvp_rho": 0.0}, "trainer.ihvp_rho must be positive"),
        ({"ihvp_max_gain": 0.5}, "trainer.ihvp_max_gain must be at least 1"),
        ({"minibatch_size": 4}, "must be a multiple of the steps per environment"),
        ({"stackelberg_sequence": [["verifier"]]}, "must name every agent once"),
    ],
)
def test_bad_spg_settings_are_refused(tmp_path, change, message):
    from nip.config import validate_hyper_params

    hp = tiny_hyper_params(tmp_path / "cache")
    settings_dict = dataclasses.asdict(hp.trainer)
    settings_dict.update(name="spg", **change)
    hp.trainer = SpgTrainerConfig(**settings_dict)
    with pytest.raises(NipConfigError, match=message):
        validate_hyper_params(hp)
