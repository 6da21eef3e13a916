"""Build a scenario instance and a trainer from hyper-parameters, and what evaluation needs.

Entry points reach a scenario only through this module.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nip.config import HyperParameters
from nip.config.memory import check_model_fits
from nip.config.trainer import shares_body
from nip.experiment_settings import ExperimentSettings
from nip.protocols import build_protocol_handler
from nip.scenario_instance import ScenarioInstance
from nip.scenarios import get_scenario
from nip.utils.seeding import derive_seed

# Largest batch of parallel episodes used to evaluate a dataset.
MAX_EVAL_ENVS = 1024


def build_scenario_instance(
    hyper_params: HyperParameters, settings: ExperimentSettings
) -> ScenarioInstance:
    """Datasets (generated or read, cached), protocol, environments and agents.

    Every random choice is seeded from ``hyper_params.seed`` (or ``scenario.data_seed`` for
    the data) through :func:`nip.utils.seeding.derive_seed`, so construction order does not
    matter.
    """
    hp = hyper_params
    scenario = get_scenario(hp.scenario.name)
    protocol_handler = build_protocol_handler(hp.protocol)
    train_dataset, test_dataset = scenario.build_datasets(hp.scenario, settings.cache_dir)
    train_env = test_env = None
    # Trainers that play no episodes (supervised solo training) get no environments.
    if type(hp.trainer).USES_ENVIRONMENTS:
        train_env = scenario.build_environment(
            train_dataset,
            protocol_handler,
            hp.trainer.frames_per_batch // hp.trainer.steps(hp.protocol),
            hp.scenario,
            seed=derive_seed(hp.seed, "train_environment"),
            device=settings.device,
        )
        test_env = scenario.build_environment(
            test_dataset,
            protocol_handler,
            min(len(test_dataset), MAX_EVAL_ENVS),
            hp.scenario,
            seed=derive_seed(hp.seed, "test_environment"),
            shuffle=False,
            device=settings.device,
        )
    policy, value = scenario.build_agents(
        protocol_handler, hp.scenario, train_dataset, hp.seed, shares_body(hp.trainer)
    )
    return ScenarioInstance(
        scenario=scenario,
        train_dataset=train_dataset,
        test_dataset=test_dataset,
        protocol_handler=protocol_handler,
        train_environment=train_env,
        test_environment=test_env,
        combined_policy=policy.to(settings.device),
        combined_value=value.to(settings.device),
    )


def build_trainer(
    hyper_params: HyperParameters,
    scenario_instance: ScenarioInstance,
    settings: ExperimentSettings,
):
    """Instantiate the trainer registered under ``hyper_params.trainer.name``."""
    from nip.trainers import TRAINER_REGISTRY

    cls = TRAINER_REGISTRY.get_class(hyper_params.trainer.name)
    return cls(hyper_params, scenario_instance, settings)


@dataclass
class EvaluationSetup:
    """A trained policy ready to play, with the data and protocol it is evaluated on."""

    scenario: Any
    dataset: Any
    protocol_handler: Any
    policy: torch.nn.Module


def build_evaluation_setup(
    hp: HyperParameters,
    policy_state: dict,
    device: torch.device,
    *,
    split: str | None = None,
    path: Path | None = None,
) -> EvaluationSetup:
    """The stored run's policy (weights ``policy_state``) on its ``split`` or a dataset file.

    Raises
    ------
    NipConfigError
        When the networks cannot fit in memory for the evaluation batch, or the file is not a
        dataset of the run's scenario.
    """
    scenario = get_scenario(hp.scenario.name)
    if split is not None:
        train, test = scenario.build_datasets(hp.scenario, Path(str(hp.cache_dir)).expanduser())
        dataset = train if split == "train" else test
    else:
        dataset = scenario.load_dataset_file(Path(path).expanduser())
    protocol_handler = build_protocol_handler(hp.protocol)
    # The stored settings decide the networks' size: refuse before allocating them.
    check_model_fits(hp, protocol_handler, min(len(dataset), MAX_EVAL_ENVS), dataset)
    policy, _ = scenario.build_agents(
        protocol_handler, hp.scenario, dataset, hp.seed, shares_body(hp.trainer)
    )
    policy.load_state_dict(policy_state)
    policy.to(device).eval()
    return EvaluationSetup(scenario, dataset, protocol_handler, policy)


def build_evaluation_env(
    setup: EvaluationSetup,
    hp: HyperParameters,
    observation_norm: dict | None,
    num_envs: int,
    seed: int,
    device: torch.device,
):
    """An environment serving ``setup.dataset`` in order, ``num_envs`` episodes at a time,
    with episode returns and the run's observation normalisation (``observation_norm``, the
    checkpoint's statistics; ``None``: none)."""
    from nip.operators import add_episode_return, add_observation_norm

    env = add_episode_return(
        setup.scenario.build_environment(
            setup.dataset,
            setup.protocol_handler,
            num_envs,
            hp.scenario,
            seed=seed,
            shuffle=False,
            device=device,
        )
    )
    if observation_norm:
        add_observation_norm(env, observation_norm)
    return env


def scenario_label_names(name: str) -> tuple[str, ...] | None:
    """The label names of the scenario registered as ``name`` (``None``: no such scenario)."""
    from nip.scenarios import SCENARIO_REGISTRY

    scenario = SCENARIO_REGISTRY.get(name) if isinstance(name, str) else None
    return None if scenario is None else tuple(scenario.label_names)
