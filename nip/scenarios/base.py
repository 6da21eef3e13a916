"""The scenario seam: what a scenario provides to the rest of the framework.

A scenario is one package ``nip/scenarios/<name>/`` whose ``scenario`` module registers a
:class:`Scenario` subclass in :data:`SCENARIO_REGISTRY`, plus ``conf/scenario/<name>.yaml``
with its typed schema (whose ``name`` field selects it). The factory, the trainers,
evaluation and validation reach a scenario only through this interface, so nothing outside
its package imports it.
"""

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torchrl.envs import EnvBase

from nip.agents import SupervisedView, parameter_groups, whole_body
from nip.environment import MESSAGE_KEYS, ProtocolEnvironment
from nip.protocols.base import ProtocolHandler
from nip.registry import Registry

SCENARIO_REGISTRY = Registry("scenario")


def agent_config(protocol_handler: ProtocolHandler, scenario_cfg: Any, agent_name: str) -> Any:
    """``scenario_cfg.verifier`` for agents that decide, ``scenario_cfg.prover`` otherwise
    (every scenario schema has both)."""
    if protocol_handler.has_decider(agent_name):
        return scenario_cfg.verifier
    return scenario_cfg.prover


class Scenario(ABC):
    """A task the verifier learns to decide, with its data, environment and agents.

    Subclasses are stateless: every method takes the scenario's config (``scenario_cfg``,
    an instance of :attr:`config_schema`) and whatever else it needs.
    """

    # The schema of ``conf/scenario/<name>.yaml`` (registered as ``<name>_schema``).
    config_schema: ClassVar[type]
    # Names of labels 0 and 1 in statistics (``accuracy_<name>``, ``<label 1>_fraction``).
    label_names: ClassVar[tuple[str, str]]
    # The scenario's environment (what an example looks like; messages point at its items).
    environment: ClassVar[type[ProtocolEnvironment]]
    # Observation keys the combined policy and value modules read, in their argument order.
    policy_in_keys: ClassVar[tuple[str, ...]]
    value_in_keys: ClassVar[tuple[str, ...]]

    @property
    def example_keys(self) -> tuple[str, ...]:
        """The policy's inputs that describe the example (not the messages or the round)."""
        return tuple(k for k in self.policy_in_keys if k not in (*MESSAGE_KEYS, "round"))

    # -- data ------------------------------------------------------------------------------
    @abstractmethod
    def build_datasets(self, scenario_cfg: Any, cache_dir: Path) -> tuple[Any, Any]:
        """The train and test datasets (read, downloaded or generated; cached)."""

    @abstractmethod
    def load_dataset_file(self, path: Path) -> Any:
        """A dataset from a file a user names (``nip.evaluate dataset.path=...``)."""

    @abstractmethod
    def strata(self, dataset: Any) -> dict[str, Tensor]:
        """Named per-example integer strata for accuracy breakdowns (-1: in none)."""

    # -- environment and agents ------------------------------------------------------------
    def build_environment(
        self,
        dataset: Any,
        protocol_handler: ProtocolHandler,
        num_envs: int,
        scenario_cfg: Any,
        *,
        seed: int,
        shuffle: bool = True,
        device: torch.device | str = "cpu",
    ) -> EnvBase:
        """A batched :attr:`environment` of ``num_envs`` episodes over ``dataset``."""
        return self.environment(
            dataset,
            protocol_handler,
            num_envs,
            message_size=scenario_cfg.message_size,
            seed=seed,
            shuffle=shuffle,
            device=device,
            **self.environment_kwargs(scenario_cfg),
        )

    def environment_kwargs(self, scenario_cfg: Any) -> dict[str, Any]:
        """Constructor arguments of :attr:`environment` beyond the shared ones."""
        return {}

    @abstractmethod
    def build_agents(
        self,
        protocol_handler: ProtocolHandler,
        scenario_cfg: Any,
        dataset: Any,
        seed: int,
        use_shared_body: bool,
    ) -> tuple[nn.Module, nn.Module]:
        """The combined policy and value modules (agent dimension), seeded by ``seed``."""

    def split_body(self, body: nn.Module, agent_cfg: Any, role: str) -> list:
        """A body's parts with their learning-rate factors (see :data:`nip.agents.BodySplit`;
        default: the whole body, factor 1)."""
        return whole_body(body, agent_cfg, role)

    @abstractmethod
    def solo_head(self, scenario_cfg: Any, agent_cfg: Any) -> nn.Module:
        """A fresh head from a body's example representation to 2 logits (solo training)."""

    def agent_configs(self, protocol_handler: ProtocolHandler, scenario_cfg: Any) -> dict:
        """Agent name -> its config, for every agent of the protocol."""
        return {
            name: self.agent_config(protocol_handler, scenario_cfg, name)
            for name in protocol_handler.agent_names
        }

    def parameter_groups(
        self,
        policy: nn.Module,
        value: nn.Module,
        scenario_cfg: Any,
        protocol_handler: ProtocolHandler,
        base_lr: float,
    ) -> list[dict]:
        """Optimizer groups ``{"params", "lr", "name": "<agent>.<part>"}`` of every agent
        (see :func:`nip.agents.parameter_groups`; the body split as :meth:`split_body`)."""
        configs = self.agent_configs(protocol_handler, scenario_cfg)
        return parameter_groups(policy, value, configs, base_lr, self.split_body)

    def supervised_view(
        self,
        policy: nn.Module,
        dataset: Any,
        scenario_cfg: Any,
        observation_stats: dict[str, dict[str, Tensor]] | None = None,
        device: torch.device | str = "cpu",
    ) -> SupervisedView:
        """The dataset as the bodies see it before any message, for solo training: the
        example observations the policy reads (in its key order), labels, strata, solo heads
        from :meth:`solo_head` and the body split of :meth:`split_body`."""
        tensors = self.environment.example_tensors(dataset)
        examples = tuple(tensors[key] for key in self.policy_in_keys if key in tensors)
        return SupervisedView(
            policy,
            examples,
            dataset.y,
            self.strata(dataset),
            self.label_names,
            self.agent_configs(policy.protocol_handler, scenario_cfg),
            lambda agent_cfg: self.solo_head(scenario_cfg, agent_cfg),
            self.split_body,
            observation_stats,
            device,
        )

    def agent_config(
        self, protocol_handler: ProtocolHandler, scenario_cfg: Any, agent_name: str
    ) -> Any:
        """The agent's architecture and learning settings (see :func:`agent_config`)."""
        return agent_config(protocol_handler, scenario_cfg, agent_name)

    # -- checks and estimates --------------------------------------------------------------
    @abstractmethod
    def check(self, hp: Any, handler: ProtocolHandler) -> None:
        """Refuse scenario settings that the schema's types cannot rule out (one line)."""

    @abstractmethod
    def model_bytes(
        self, hp: Any, handler: ProtocolHandler, batch: int, dataset: Any = None
    ) -> int:
        """A rough lower bound on the memory the agents need for a batch of ``batch``."""

    @abstractmethod
    def frame_bytes(self, hp: Any, handler: ProtocolHandler) -> int:
        """A lower bound on the bytes one collected frame (and its next observation) takes."""

    # -- display ---------------------------------------------------------------------------
    @abstractmethod
    def describe_example(self, frame: Any) -> dict[str, Any]:
        """Columns describing a rollout sample's example, from its episode's last frame:
        text (e.g. both graphs' edge lists) or an image (uint8 ``[H, W, 3]`` array, shown as
        a picture in the W&B table)."""

    @abstractmethod
    def describe_message(self, channel_messages: Tensor) -> list[str]:
        """Names of the items (nodes, latent pixels) set in one round's ``[P, ...]`` message."""

    @abstractmethod
    def episode_figure(
        self, episode: Any, agent_names: tuple[str, ...], channel_names: tuple[str, ...]
    ) -> Any:
        """A matplotlib figure of one :class:`nip.episodes.Episode`: the example, what each
        agent pointed at in each round (in the colours of :func:`nip.episodes.agent_colours`)
        and how the episode ended (:meth:`nip.episodes.Episode.title`)."""

    def probe_targets(
        self, dataset: Any, results: Any, pointed: Tensor, examples: dict, handler: ProtocolHandler
    ) -> dict[str, tuple[Tensor, Tensor]]:
        """What ``nip.probe`` tries to read from the messages of recorded episodes (see
        :func:`nip.evaluation.record_episodes`): by name, a long ``[E]`` class per episode and
        a bool ``[E]`` mask of the episodes where it is defined. Every scenario has
        ``label``; scenarios add their own."""
        y = results.y
        return {"label": (y, torch.ones_like(y, dtype=torch.bool))}

    def rollout_pictures(self, episode: Any, agent_names, channel_names) -> dict[str, Any]:
        """Pictures (uint8 ``[H, W, 3]`` by name) logged with a W&B rollout sample beside
        :meth:`describe_example`'s columns; by default :meth:`episode_figure` as ``episode``."""
        from nip.episodes import figure_pixels

        return {"episode": figure_pixels(self.episode_figure(episode, agent_names, channel_names))}


def get_scenario(name: str) -> Scenario:
    """The scenario registered under ``name``.

    Raises
    ------
    KeyError
        Naming the known scenarios.
    """
    import nip.scenarios  # noqa: F401  (registers every scenario)

    return SCENARIO_REGISTRY.get_class(name)()
