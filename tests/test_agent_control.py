"""Per-agent control: frozen agents never change, random agents play uniformly and have no
parameters, and neither takes part in the losses."""

import copy

import pytest
import torch

from nip.config.protocol import MultiProverProtocolConfig
from nip.errors import NipConfigError
from nip.utils.nn import MASKED_LOGIT
from tests.helpers import read_metrics, run_settings, tiny_hyper_params


def _train(tmp_path, *, iterations: int = 2, protocol=None, **agent_flags):
    """Train the tiny settings with ``prover_random=True`` etc.; return the trainer."""
    from nip.factory import build_scenario_instance, build_trainer

    hp = tiny_hyper_params(tmp_path / "cache", num_iterations=iterations)
    if protocol is not None:
        hp.protocol = protocol
    for flag, value in agent_flags.items():
        role, key = flag.split("_", 1)
        setattr(getattr(hp.scenario, role), key, value)
    settings = run_settings(tmp_path / "run")
    trainer = build_trainer(hp, build_scenario_instance(hp, settings), settings)
    return trainer


def _agent_parameters(trainer, name: str) -> dict[str, torch.Tensor]:
    """Every parameter of agent ``name`` in the policy and value networks, by name."""
    instance = trainer.scenario_instance
    params = {}
    for prefix, module in (
        ("policy", instance.combined_policy),
        ("value", instance.combined_value),
    ):
        for key, value in module.named_parameters():
            parts = key.split(".")
            if len(parts) > 1 and parts[1] == name:
                params[f"{prefix}.{key}"] = value
    return params


def test_frozen_prover_keeps_its_parameters_and_the_verifier_learns(tmp_path, trainer_datasets):
    trainer = _train(tmp_path, prover_frozen=True)
    prover_before = copy.deepcopy(
        {k: v.detach().clone() for k, v in _agent_parameters(trainer, "prover").items()}
    )
    verifier_before = {
        k: v.detach().clone() for k, v in _agent_parameters(trainer, "verifier").items()
    }
    assert prover_before and verifier_before
    # Not in the optimizer at all: no gradient, no share of the clipping norm, no Adam state.
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in _agent_parameters(trainer, "prover").values()}
    trainer.train()
    after = _agent_parameters(trainer, "prover")
    assert all(torch.equal(after[k], v) for k, v in prover_before.items())
    assert all(p.grad is None for p in after.values())
    assert any(
        not torch.equal(_agent_parameters(trainer, "verifier")[k], v)
        for k, v in verifier_before.items()
    )
    rows = read_metrics(tmp_path / "run")
    # Only learning agents report losses.
    assert "verifier.loss_objective" in rows[0] and "prover.loss_objective" not in rows[0]
    assert "prover.mean_value" in rows[0]  # a frozen agent still has its critic's values


def test_random_prover_has_no_parameters_and_samples_uniformly(tmp_path, trainer_datasets):
    trainer = _train(tmp_path, prover_random=True)
    assert _agent_parameters(trainer, "prover") == {}
    trainer.train()
    rows = read_metrics(tmp_path / "run")
    train_rows = [r for r in rows if "mean_accuracy" in r]
    for row in train_rows:
        # Uniform over the nodes open to it: normalised entropy exactly 1, every step.
        assert row["prover.mean_message_entropy"] == pytest.approx(1.0, abs=1e-5)
        assert "prover.loss_objective" not in row and "prover.mean_value" not in row
        assert "verifier.loss_objective" in row


def test_random_prover_logits_are_equal_over_open_nodes(tmp_path, trainer_datasets):
    trainer = _train(tmp_path, prover_random=True)
    env = trainer.scenario_instance.train_environment
    data = env.rollout(4, trainer.policy_operator, break_when_any_done=False)
    prover = trainer.agent_names.index("prover")
    logits = data["agents", "main_message_logits"][..., prover, :, :, :]
    open_ = logits > MASKED_LOGIT / 2
    assert open_.any()
    assert (logits[open_] == 0).all()


def test_random_provers_in_debate(tmp_path, trainer_datasets):
    protocol = MultiProverProtocolConfig(name="debate", min_message_rounds=1)
    trainer = _train(tmp_path, protocol=protocol, prover_random=True)
    for name in trainer.agent_names:
        if name != "verifier":
            assert _agent_parameters(trainer, name) == {}
    trainer.train()
    assert read_metrics(tmp_path / "run")[-1]["test_num_episodes"] > 0


@pytest.mark.parametrize(
    "flags",
    [
        {"prover_frozen": True, "verifier_frozen": True},
        {"prover_random": True, "verifier_frozen": True},
        {"prover_random": True, "verifier_random": True},
    ],
)
def test_a_run_in_which_no_agent_learns_is_refused(tmp_path, flags):
    from nip.config import validate_hyper_params

    hp = tiny_hyper_params(tmp_path / "cache")
    for flag, value in flags.items():
        role, key = flag.split("_", 1)
        setattr(getattr(hp.scenario, role), key, value)
    with pytest.raises(NipConfigError, match="no agent learns"):
        validate_hyper_params(hp)


def test_frozen_or_random_is_part_of_the_experiment(tmp_path, trainer_datasets):
    """Resuming a run with a prover that has become random is refused (it is another
    experiment), like any change of the science."""
    from nip.errors import NipCheckpointError

    trainer = _train(tmp_path, iterations=1)
    trainer.train()
    with pytest.raises(NipCheckpointError):
        _train(tmp_path, iterations=1, prover_random=True).train()
