"""REINFORCE (``trainer=reinforce``): reward-to-go weighting, or GAE with a critic."""

import dataclasses

import pytest
import torch
from tensordict import TensorDict

from nip.config.loss import ReinforceLossConfig
from nip.config.trainer import ReinforceTrainerConfig
from nip.errors import NipConfigError
from nip.trainers.reinforce import reward_to_go
from tests.helpers import read_metrics, run_settings, tiny_hyper_params


def test_reward_to_go_stops_at_episode_ends_and_at_row_ends():
    """Two environments, four steps, two agents, gamma 0.5. Row 0: an episode ends at step 1,
    the next is cut off by the end of the row. Row 1: agent 1 finishes at step 0 (zero
    knowledge's early finish), agent 0 plays on."""
    reward = torch.tensor(
        [
            [[1.0, 0.0], [2.0, 1.0], [0.0, 0.0], [4.0, 2.0]],
            [[8.0, 1.0], [0.0, 0.0], [0.0, 0.0], [2.0, 0.0]],
        ]
    )[..., None]
    done = torch.zeros(2, 4, 2, 1, dtype=torch.bool)
    done[0, 1] = True
    done[1, 0, 1] = True
    data = TensorDict({"next": {"agents": {"reward": reward, "done": done}}}, batch_size=[2, 4])
    returns = reward_to_go(data, gamma=0.5)[..., 0]
    expected = torch.tensor(
        [
            [[2.0, 0.5], [2.0, 1.0], [2.0, 1.0], [4.0, 2.0]],
            [[8.25, 1.0], [0.5, 0.0], [1.0, 0.0], [2.0, 0.0]],
        ]
    )
    assert torch.allclose(returns, expected)
    # Row 0's last frames never see row 1's rewards (the original ran a cut-off episode on
    # into the next environment's row).


def _hyper_params(tmp_path, iterations: int = 2, critic: bool = False):
    hp = tiny_hyper_params(tmp_path / "cache", num_iterations=iterations)
    trainer = dataclasses.asdict(hp.trainer)
    trainer.update(name="reinforce", use_advantage_and_critic=critic)
    hp.trainer = ReinforceTrainerConfig(**trainer)
    hp.loss = ReinforceLossConfig()
    return hp


def _trainer(tmp_path, iterations: int = 2, critic: bool = False, run: str = "run"):
    from nip.factory import build_scenario_instance, build_trainer

    hp = _hyper_params(tmp_path, iterations, critic)
    settings = run_settings(tmp_path / run)
    return build_trainer(hp, build_scenario_instance(hp, settings), settings)


@pytest.mark.parametrize("critic", [False, True])
def test_loss_is_minus_log_prob_times_the_weight_per_agent(tmp_path, trainer_datasets, critic):
    from nip.objectives.ppo import AGENT_DONE_KEY, masked_standardize

    trainer = _trainer(tmp_path, critic=critic)
    collector_data = next(iter(trainer._get_data_collectors()[0]))
    trainer._estimate_advantages(collector_data)
    batch = collector_data.reshape(-1)
    out = trainer.loss_module(batch)
    playing = ~batch[AGENT_DONE_KEY]
    if critic:
        weight = masked_standardize(batch["agents", "advantage"], playing[..., None])[..., 0]
    else:
        weight = batch["agents", "reward_to_go"][..., 0]
    log_prob = trainer.policy_operator.get_dist(batch).log_prob(batch["agents", "action"])
    for i in range(trainer.num_agents):
        mine = playing[:, i]
        expected = -(log_prob[mine, i] * weight[mine, i]).mean()
        # Float sums in another order (thread counts differ between test runs): 1e-4 relative.
        assert out["agents", "loss_actor"][i].item() == pytest.approx(
            expected.item(), rel=1e-4, abs=1e-7
        )
    assert ("loss_critic" in out.keys()) == critic


@pytest.mark.parametrize("critic", [False, True])
def test_reinforce_learns_logs_and_resumes_exactly(tmp_path, trainer_datasets, critic):
    _trainer(tmp_path, iterations=4, critic=critic, run="straight").train()
    _trainer(tmp_path, iterations=2, critic=critic, run="resumed").train()
    _trainer(tmp_path, iterations=4, critic=critic, run="resumed").train()
    straight = [r for r in read_metrics(tmp_path / "straight") if "mean_accuracy" in r]
    resumed = [r for r in read_metrics(tmp_path / "resumed") if "mean_accuracy" in r]
    assert straight == resumed and len(straight) == 4
    assert "verifier.loss_actor" in straight[0]
    # Critic statistics exist only with a critic.
    assert ("verifier.mean_value" in straight[0]) == critic
    assert ("verifier.loss_critic" in straight[0]) == critic


def test_reinforce_needs_its_own_objective(tmp_path):
    from nip.config import validate_hyper_params
    from nip.config.loss import ClipLossConfig

    hp = _hyper_params(tmp_path)
    hp.loss = ClipLossConfig()
    with pytest.raises(NipConfigError, match="trainer=reinforce works with loss=reinforce"):
        validate_hyper_params(hp)
