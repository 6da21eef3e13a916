"""The root schema (``HyperParameters``), its ConfigStore registration and cross-field checks."""

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from nip.config.advantage import GaeConfig
from nip.config.choices import check_choices
from nip.config.launcher import register_resolvers
from nip.config.loss import ClipLossConfig, KlPenaltyLossConfig, ReinforceLossConfig
from nip.config.memory import available_memory_bytes
from nip.config.protocol import MultiProverProtocolConfig, ProtocolConfig
from nip.config.runtime import (
    BaseRunConfig,
    CheckpointConfig,
    DeviceConfig,
    LoggerConfig,
    WandbLoggerConfig,
)
from nip.config.schedule import (
    AlternatingScheduleConfig,
    ConstantScheduleConfig,
    PeriodicScheduleConfig,
    check_schedule,
)
from nip.config.trainer import (
    PpoTrainerConfig,
    ReinforceTrainerConfig,
    SoloAgentTrainerConfig,
    SpgTrainerConfig,
)
from nip.errors import NipConfigError, require


@dataclass
class HyperParameters:
    """Everything that defines a run: the composed Hydra config as typed dataclasses.

    The group fields are typed ``Any`` here because each group option brings its own schema
    (registered as ``<option>_schema`` in its group), which Hydra enforces at composition.
    ``device``, ``logger``, ``checkpoint`` and ``cache_dir`` are runtime settings: they may
    change between a run and its resumption; everything else is the science.

    Attributes
    ----------
    seed : int
        The experiment seed: agent initialisation, data order and action sampling.
    trainer, scenario, protocol, loss, advantage, schedule, device, logger
        The option chosen for the config group of that name (``trainer=ppo``, ...), with the
        fields of that option's schema.
    checkpoint : CheckpointConfig
        When checkpoints are written.
    base_run : BaseRunConfig
        Another run whose trained agents this run starts from.
    cache_dir : str
        Where generated datasets and pretrained bodies are cached (``$NIP_CACHE_DIR``,
        default ``~/.cache/nip``).
    """

    seed: int = 8144
    trainer: Any = MISSING
    scenario: Any = MISSING
    protocol: Any = MISSING
    loss: Any = MISSING
    advantage: Any = MISSING
    schedule: Any = MISSING
    device: Any = MISSING
    logger: Any = MISSING
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    base_run: BaseRunConfig = field(default_factory=BaseRunConfig)
    cache_dir: str = "${oc.env:NIP_CACHE_DIR,'~/.cache/nip'}"


# Fields that may change between a run and its resumption without changing what is computed.
RUNTIME_FIELDS = ("device", "logger", "checkpoint", "cache_dir")

# Group -> option name -> schema. Each schema is registered as ``<name>_schema`` in its group;
# a YAML option file starts from one of them. Protocols share one schema unless they need more.
GROUP_SCHEMAS: dict[str, dict[str, type]] = {
    "trainer": {
        "ppo": PpoTrainerConfig,
        "reinforce": ReinforceTrainerConfig,
        "spg": SpgTrainerConfig,
        "solo_agent": SoloAgentTrainerConfig,
    },
    "protocol": {"protocol": ProtocolConfig, "multi_prover": MultiProverProtocolConfig},
    "loss": {
        "clip": ClipLossConfig,
        "kl_penalty": KlPenaltyLossConfig,
        "reinforce": ReinforceLossConfig,
    },
    "advantage": {"gae": GaeConfig},
    "schedule": {
        "constant": ConstantScheduleConfig,
        "periodic": PeriodicScheduleConfig,
        "alternating": AlternatingScheduleConfig,
    },
    "device": {"device": DeviceConfig},
    "logger": {"local": LoggerConfig, "wandb": WandbLoggerConfig},
}


def group_schemas() -> dict[str, dict[str, type]]:
    """:data:`GROUP_SCHEMAS` and every registered scenario's schema (scenarios bring their
    own, see :mod:`nip.scenarios.base`)."""
    from nip.scenarios import SCENARIO_REGISTRY

    scenarios = {name: cls.config_schema for name, cls in SCENARIO_REGISTRY.items()}
    return {**GROUP_SCHEMAS, "scenario": scenarios}


# Schemas used for options without a schema of their own, when rebuilding from a dict.
DEFAULT_SCHEMAS = {"protocol": "protocol", "device": "device"}
PROTOCOL_SCHEMA_BY_NAME = {"debate": "multi_prover", "mnip": "multi_prover"}


def register_configs() -> None:
    """Register the root schema and every group schema in Hydra's ConfigStore."""
    register_resolvers()
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=HyperParameters)
    for group, options in group_schemas().items():
        for option, schema in options.items():
            cs.store(group=group, name=f"{option}_schema", node=schema)


# Science fields added since checkpoints were first written, with the value that reproduces
# runs from before them: a checkpoint without such a field is of the same experiment as a run
# with that value (and of a different one otherwise).
ADDED_SCIENCE_FIELDS: dict[tuple[str, ...], Any] = {
    ("schedule",): {"name": "constant"},
    ("scenario", "prover", "frozen"): False,
    ("scenario", "prover", "random"): False,
    ("scenario", "verifier", "frozen"): False,
    ("scenario", "verifier", "random"): False,
}


def with_added_science_fields(stored: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's science dict with the fields it predates filled in (see above)."""
    filled = copy.deepcopy(stored)
    for path, value in ADDED_SCIENCE_FIELDS.items():
        node = filled
        for key in path[:-1]:
            node = node.get(key)
            if not isinstance(node, dict):
                break
        else:
            node.setdefault(path[-1], copy.deepcopy(value))
    return filled


def hyper_params_record(hyper_params: HyperParameters) -> dict[str, Any]:
    """The whole configuration in JSON types, as checkpoints and W&B record it: choices as
    the strings they spell, anything else JSON lacks as its ``str``. Read back with
    :func:`hyper_params_from_dict`."""
    return json.loads(json.dumps(dataclasses.asdict(hyper_params), default=str))


def science_dict(hyper_params: HyperParameters) -> dict[str, Any]:
    """The fields that decide what a run computes, for comparing a run with its resumption."""
    d = dataclasses.asdict(hyper_params)
    for name in RUNTIME_FIELDS:
        d.pop(name, None)
    # Fields of the trainer that may change on resumption (the length of training, ...).
    for key in type(hyper_params.trainer).EXTENSIBLE_FIELDS:
        d["trainer"].pop(key, None)
    # Scenario settings that say where things are, not what is computed (a data directory).
    for key in getattr(type(hyper_params.scenario), "RUNTIME_FIELDS", ()):
        d["scenario"].pop(key, None)
    return d


def agent_is_fixed(agent_cfg) -> bool:
    """Whether an agent with this configuration never learns (``frozen`` or ``random``)."""
    return agent_cfg.frozen or agent_cfg.random


def validate_hyper_params(hp: HyperParameters) -> None:
    """Check relations between fields that the schema's types cannot express.

    Raises
    ------
    NipConfigError
        With a one-line message naming the offending keys.
    """
    from nip.protocols import PROTOCOL_REGISTRY, build_protocol_handler

    t, p, s = hp.trainer, hp.protocol, hp.scenario

    # Composed configs had these checked by OmegaConf; configs built in Python had not.
    check_choices(hp)
    require(p.name in PROTOCOL_REGISTRY, f"unknown protocol.name {p.name!r}")
    handler = build_protocol_handler(p)  # protocols with a fixed structure check their rounds
    require(p.max_message_rounds >= 1, "protocol.max_message_rounds must be at least 1")
    require(
        p.min_message_rounds <= p.max_message_rounds,
        f"protocol.min_message_rounds ({p.min_message_rounds}) is greater than "
        f"protocol.max_message_rounds ({p.max_message_rounds})",
    )
    require(p.min_message_rounds >= 0, "protocol.min_message_rounds must be non-negative")
    t.check(hp, handler)  # the trainer's own settings, and the objectives it works with
    if hp.loss.name == "kl_penalty":
        lc = hp.loss
        require(lc.kl_target > 0, f"loss.kl_target must be positive, got {lc.kl_target}")
        require(lc.kl_beta >= 0, f"loss.kl_beta must be non-negative, got {lc.kl_beta}")
        require(
            lc.kl_increment >= 1 and 0 < lc.kl_decrement <= 1,
            f"loss.kl_increment must be >= 1 and loss.kl_decrement in (0, 1], got "
            f"{lc.kl_increment} and {lc.kl_decrement}",
        )
    require(0 < hp.advantage.gamma <= 1, "advantage.gamma must be in (0, 1]")
    require(0 <= hp.advantage.lmbda <= 1, "advantage.lmbda must be in [0, 1]")
    from nip.scenarios import SCENARIO_REGISTRY, get_scenario

    require(
        s.name in SCENARIO_REGISTRY,
        f"unknown scenario.name {s.name!r}; known: {', '.join(sorted(SCENARIO_REGISTRY))}",
    )
    scenario = get_scenario(s.name)
    scenario.check(hp, handler)
    require(
        hp.checkpoint.interval >= 1,
        f"checkpoint.interval must be >= 1, got {hp.checkpoint.interval}",
    )
    threads = hp.device.num_threads
    require(threads is None or threads >= 1, f"device.num_threads must be >= 1, got {threads}")
    for key in ("rollout_sample_period", "num_rollout_samples"):
        value = getattr(hp.logger, key, 0)
        require(value >= 0, f"logger.{key} must be >= 0, got {value}")
    learning = [
        not agent_is_fixed(scenario.agent_config(handler, s, n)) for n in handler.agent_names
    ]
    require(
        any(learning),
        "no agent learns: every agent is frozen or random (scenario.prover / scenario.verifier "
        ".frozen and .random)",
    )
    check_schedule(hp.schedule, handler.agent_names, handler.prover_names, learning)
    # Last: the estimates need every size above to be valid.
    available = available_memory_bytes()
    if available is not None:
        t.check_memory(hp, handler, available)


def hyper_params_from_dict(d: dict[str, Any]) -> HyperParameters:
    """Rebuild typed hyper-parameters from ``dataclasses.asdict`` output (e.g. a checkpoint).

    Each group is re-validated against its schema, so a checkpoint from an incompatible
    version fails with a clear error instead of building the wrong model.
    """
    from omegaconf import OmegaConf

    schemas = group_schemas()

    def typed(group: str, option: str, values: dict[str, Any]) -> Any:
        options = schemas[group]
        if group == "protocol":
            option = PROTOCOL_SCHEMA_BY_NAME.get(option, option)
        schema = options.get(option) or options[DEFAULT_SCHEMAS[group]]
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))

    # Runs from before update schedules existed updated every agent in every iteration.
    schedule = d.get("schedule", {"name": "constant"})
    try:
        return HyperParameters(
            seed=d["seed"],
            trainer=typed("trainer", d["trainer"]["name"], d["trainer"]),
            scenario=typed("scenario", d["scenario"]["name"], d["scenario"]),
            protocol=typed("protocol", d["protocol"]["name"], d["protocol"]),
            loss=typed("loss", d["loss"]["name"], d["loss"]),
            advantage=typed("advantage", d["advantage"]["name"], d["advantage"]),
            schedule=typed("schedule", schedule["name"], schedule),
            device=typed("device", "device", d["device"]),
            logger=typed("logger", d["logger"]["name"], d["logger"]),
            checkpoint=CheckpointConfig(**d["checkpoint"]),
            base_run=BaseRunConfig(**d.get("base_run", {})),
            cache_dir=d["cache_dir"],
        )
    except Exception as e:  # missing keys, unknown options, wrong types
        raise NipConfigError(f"stored hyper-parameters do not match this version: {e}") from e
