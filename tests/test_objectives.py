"""The per-agent PPO loss: frames after an agent finished are not its frames."""

import pytest
import torch

from nip.experiment_settings import ExperimentSettings
from nip.factory import build_scenario_instance, build_trainer
from nip.objectives.ppo import masked_standardize
from tests.helpers import random_pairs, tiny_hyper_params, use_datasets


def test_masked_standardize_matches_torch_over_the_masked_frames():
    values = torch.randn(10, 3, 1, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(10, 3, 1, dtype=torch.bool)
    mask[6:, 1] = False
    out = masked_standardize(values, mask)
    for agent in range(3):
        kept = values[:, agent, 0][mask[:, agent, 0]]
        expected = (kept - kept.mean()) / kept.std()
        torch.testing.assert_close(out[:, agent, 0][mask[:, agent, 0]], expected)


def test_frames_after_an_agent_finished_leave_its_losses_unchanged(tmp_path, monkeypatch):
    """Appending frames in which the verifier had already finished, with arbitrary
    advantages and value targets, changes none of the verifier's loss terms."""
    use_datasets(monkeypatch, random_pairs(80, 6), random_pairs(20, 6, 1))
    hp = tiny_hyper_params(tmp_path / "cache")
    s = ExperimentSettings(run_dir=tmp_path / "run", progress_bar=False, cache_dir=tmp_path)
    trainer = build_trainer(hp, build_scenario_instance(hp, s), s)
    collector, _ = trainer._get_data_collectors()
    data = next(iter(collector))
    collector.shutdown()
    trainer._estimate_advantages(data)
    frames = data.reshape(-1)
    extra = frames[:16].clone()
    extra["agents", "agent_done"][:, 1] = True
    g = torch.Generator().manual_seed(1)
    extra["agents", "advantage"][:, 1] = 100 * torch.randn(16, 1, generator=g)
    extra["agents", "value_target"][:, 1] = 100 * torch.randn(16, 1, generator=g)
    loss = trainer.loss_module
    with torch.no_grad():
        alone = loss(frames)["agents"]
        padded = loss(torch.cat([frames, extra]))["agents"]
    for key in ("loss_objective", "loss_critic", "loss_entropy"):
        assert padded[key][1].item() == pytest.approx(alone[key][1].item(), rel=1e-5)
