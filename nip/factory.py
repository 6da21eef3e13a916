"""Build a scenario instance and a trainer from hyper-parameters."""

from nip.config import HyperParameters
from nip.config.trainer import shares_body
from nip.experiment_settings import ExperimentSettings
from nip.protocols import build_protocol_handler
from nip.scenario_instance import ScenarioInstance
from nip.scenarios import get_scenario
from nip.utils.seeding import derive_seed

# Largest batch of parallel episodes used to evaluate a dataset.
MAX_EVAL_ENVS = 1024


def steps_per_env(hyper_params: HyperParameters) -> int:
    """Steps each parallel training environment takes per iteration."""
    t = hyper_params.trainer
    return (
        t.steps_per_env if t.steps_per_env is not None else hyper_params.protocol.max_message_rounds
    )


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
            hp.trainer.frames_per_batch // steps_per_env(hp),
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
