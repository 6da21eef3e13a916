"""PPO with a per-agent adaptive KL penalty (``loss=kl_penalty``)."""

import pytest
import torch

from nip.config.loss import KlPenaltyLossConfig
from nip.errors import NipConfigError
from tests.helpers import read_metrics, run_settings, tiny_hyper_params


def _hyper_params(tmp_path, iterations: int = 2, **loss_settings):
    hp = tiny_hyper_params(tmp_path / "cache", num_iterations=iterations)
    hp.loss = KlPenaltyLossConfig(**loss_settings)
    return hp


def _trainer(tmp_path, iterations: int = 2, run: str = "run", **loss_settings):
    from nip.factory import build_scenario_instance, build_trainer

    hp = _hyper_params(tmp_path, iterations, **loss_settings)
    settings = run_settings(tmp_path / run)
    return build_trainer(hp, build_scenario_instance(hp, settings), settings)


class _Result(dict):
    """Stands in for the loss output (``set`` is all the term-adding code calls)."""

    def set(self, key, value):
        self[key] = value


def test_penalty_and_beta_adaptation_follow_the_rule(tmp_path, trainer_datasets):
    """Agent 0's log-ratios give kl 0.03 (> 1.5 x 0.01: beta doubles), agent 1's kl 0.001
    (< 0.01 / 1.5: beta halves); an agent without frames keeps its beta."""
    loss = _trainer(tmp_path, kl_target=0.01, kl_beta=2.0).loss_module
    assert loss.num_agents == 2
    log_weight = torch.tensor([[-0.02, -0.001], [-0.04, -0.001], [5.0, 5.0]], requires_grad=True)
    weight = torch.tensor([[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]])  # third frame: nobody's
    loss._log_weight_of_forward = log_weight
    result, per_agent = _Result(), {}
    loss._extra_terms(result, per_agent, weight, weight.sum(0))
    assert per_agent["kl"].tolist() == pytest.approx([0.03, 0.001])
    assert per_agent["loss_kl_penalty"].tolist() == pytest.approx([0.06, 0.002])
    assert result["loss_kl_penalty"].item() == pytest.approx(0.062)
    assert per_agent["kl_beta"].tolist() == [2.0, 2.0]  # the beta that was used
    assert loss.kl_beta.tolist() == [4.0, 1.0]
    # The penalty is differentiable in the log-ratios, with beta as the slope.
    result["loss_kl_penalty"].backward()
    # d(beta kl)/d log r = -beta / frames = -1 on every agent's frame, 0 on the other.
    assert log_weight.grad.flatten().tolist() == pytest.approx([-1.0] * 4 + [0.0] * 2)

    loss._log_weight_of_forward = torch.tensor([[-0.01, -0.02]])
    loss._extra_terms(_Result(), {}, torch.tensor([[1.0, 0.0]]), torch.tensor([1.0, 1.0]))
    assert loss.kl_beta.tolist() == [4.0, 1.0]  # 0.01 is within the band; agent 1 had no frames


def test_kl_penalty_run_logs_per_agent_kl_and_resumes_exactly(tmp_path, trainer_datasets):
    straight = _trainer(tmp_path, iterations=4, run="straight")
    straight.train()
    _trainer(tmp_path, iterations=2, run="resumed").train()
    resumed = _trainer(tmp_path, iterations=4, run="resumed")
    beta_at_resume = resumed.loss_module.kl_beta.clone()
    assert not torch.equal(beta_at_resume, torch.ones(2))  # restored, not re-initialised
    resumed.train()
    rows = [r for r in read_metrics(tmp_path / "straight") if "mean_accuracy" in r]
    again = [r for r in read_metrics(tmp_path / "resumed") if "mean_accuracy" in r]
    assert rows == again
    assert {"verifier.kl", "verifier.kl_beta", "prover.loss_kl_penalty"} <= set(rows[0])
    assert torch.equal(straight.loss_module.kl_beta, resumed.loss_module.kl_beta)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"kl_target": 0.0}, "loss.kl_target must be positive"),
        ({"kl_beta": -1.0}, "loss.kl_beta must be non-negative"),
        ({"kl_increment": 0.5}, "loss.kl_increment must be >= 1"),
        ({"kl_decrement": 0.0}, "loss.kl_decrement in"),
    ],
)
def test_bad_kl_settings_are_refused(tmp_path, settings, message):
    from nip.config import validate_hyper_params

    with pytest.raises(NipConfigError, match=message):
        validate_hyper_params(_hyper_params(tmp_path, **settings))
