"""Image classification behind the scenario seam (``scenario=image_classification``)."""

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nip.config.trainer import shares_body
from nip.errors import NipDataError, require
from nip.protocols.base import ProtocolHandler
from nip.scenarios.base import SCENARIO_REGISTRY, Scenario
from nip.scenarios.image_classification import agents
from nip.scenarios.image_classification.config import ImageClassificationScenarioConfig
from nip.scenarios.image_classification.dataset import (
    ImageDataset,
    build_datasets,
    check_dataset_settings,
)
from nip.scenarios.image_classification.environment import (
    ImageClassificationEnvironment,
    latent_shape,
)
from nip.scenarios.image_classification.pictures import episode_figure, render_messages
from nip.scenarios.image_classification.sources import SOURCES
from nip.utils.nn import mlp, orthogonal_init_


@SCENARIO_REGISTRY.register("image_classification")
class ImageClassificationScenario(Scenario):
    """Is this image of the chosen kind? Provers point at latent pixels; the verifier decides."""

    config_schema = ImageClassificationScenarioConfig
    environment = ImageClassificationEnvironment
    # Label 1: the image is of the kind asked about (the second selected class, a class of
    # the merged half, ...).
    label_names = ("negative", "positive")
    policy_in_keys = ("x", "message", "message_history", "image", "round")
    value_in_keys = ("x", "message", "image", "round")

    def build_datasets(
        self, scenario_cfg: ImageClassificationScenarioConfig, cache_dir: Path
    ) -> tuple[ImageDataset, ImageDataset]:
        """The binarised splits of ``scenario.dataset`` (downloaded if missing; cached)."""
        return build_datasets(scenario_cfg, cache_dir)

    def load_dataset_file(self, path: Path) -> ImageDataset:
        """A processed split as the cache stores it (``images``, ``y``, ``classes``).

        Raises
        ------
        NipDataError
            For a missing or unreadable file.
        """
        path = Path(path).expanduser()
        if not path.is_file():
            raise NipDataError(f"dataset file {path}: no such file")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            return ImageDataset(state["images"], state["y"], state["classes"])
        except Exception as e:  # torch, key and shape errors alike: not such a file
            raise NipDataError(f"dataset file {path}: not an image dataset ({e})") from None

    def strata(self, dataset: ImageDataset) -> dict[str, Tensor]:
        """The source class of each image."""
        return {"class": dataset.classes}

    def build_agents(
        self,
        protocol_handler: ProtocolHandler,
        scenario_cfg: ImageClassificationScenarioConfig,
        dataset: ImageDataset,
        seed: int,
        use_shared_body: bool,
    ) -> tuple[nn.Module, nn.Module]:
        """Convolutional bodies with latent-pixel selector, decider and value heads."""
        return agents.build_combined_agents(
            protocol_handler, scenario_cfg, dataset.image_shape, seed, use_shared_body
        )

    def environment_kwargs(self, scenario_cfg: ImageClassificationScenarioConfig) -> dict:
        """The latent grid: ``num_block_groups`` halvings of the image."""
        return {"num_block_groups": scenario_cfg.num_block_groups}

    def solo_head(
        self, scenario_cfg: ImageClassificationScenarioConfig, agent_cfg: Any
    ) -> nn.Module:
        """An MLP from the image representation to reject/accept logits."""
        head = mlp(scenario_cfg.d_representation, agent_cfg.d_decider, 2, 2, agent_cfg.activation)
        orthogonal_init_(head)
        return head

    def check(self, hp: Any, handler: ProtocolHandler) -> None:
        """Dataset, grid and architecture settings (one line each).

        Raises
        ------
        NipConfigError
        """
        s = hp.scenario
        check_dataset_settings(s)
        require(s.num_block_groups >= 0, "scenario.num_block_groups must be >= 0")
        for key in ("initial_num_channels", "d_representation", "message_size"):
            value = getattr(s, key)
            require(value >= 1, f"scenario.{key} must be at least 1, got {value}")
        image_shape = SOURCES[s.dataset].image_shape
        require(
            min(latent_shape(image_shape, s.num_block_groups)) >= 1,
            f"scenario.num_block_groups={s.num_block_groups} halves the {image_shape[1]}x"
            f"{image_shape[2]} images of {s.dataset} to nothing",
        )
        for role in ("prover", "verifier"):
            getattr(s, role).check(role, shares_body(hp.trainer))

    def frame_bytes(self, hp: Any, handler: ProtocolHandler) -> int:
        """Message history (and its normalised copy), message and every agent's pixel
        logits in float32, the image in uint8; observation and next one."""
        s, p = hp.scenario, hp.protocol
        c, height, width = SOURCES[s.dataset].image_shape
        h, w = latent_shape((c, height, width), s.num_block_groups)
        message = handler.num_channels * s.message_size * h * w
        floats = 2 * (2 * p.max_message_rounds * message + message) + handler.num_agents * message
        return 4 * floats + 2 * c * height * width

    def model_bytes(
        self, hp: Any, handler: ProtocolHandler, batch: int, dataset: Any = None
    ) -> int:
        """Per agent, an actor and a critic body: weights, gradients and two Adam moments,
        plus a forward and backward pass's feature maps over ``batch`` images."""
        s, p = hp.scenario, hp.protocol
        image_shape = dataset.image_shape if dataset is not None else None
        c, height, width = image_shape or SOURCES[s.dataset].image_shape
        total = 0
        for name in handler.agent_names:
            a = self.agent_config(handler, s, name)
            d_in = p.max_message_rounds * handler.num_channels * s.message_size + c
            params = d_in * d_in + d_in * s.initial_num_channels
            activations = height * width * (2 * d_in + s.initial_num_channels)
            channels, size = s.initial_num_channels, height * width
            for _ in range(s.num_block_groups):
                for block in range(a.num_blocks_per_group):
                    c_out = 2 * channels if block == 0 else channels
                    params += a.kernel_size**2 * channels * c_out
                    activations += size * c_out
                    channels = c_out
                size //= 4
            total += 2 * (16 * params + 4 * 2 * batch * activations)
        return total

    def describe_example(self, frame: Any) -> dict[str, Any]:
        """The image once per round, with the latent pixels that round pointed at tinted red."""
        return {"image": render_messages(frame["image"], frame["next", "message_history"])}

    def describe_message(self, channel_messages: Tensor) -> list[str]:
        """``(3,1)``: the latent pixels (row, column) set in a ``[P, h, w]`` message."""
        return [f"({row},{col})" for row, col in channel_messages.sum(0).nonzero().tolist()]

    def episode_figure(self, episode: Any, agent_names, channel_names) -> Any:
        """The image once per round, its pointed-at latent pixels tinted, captioned."""
        return episode_figure(episode, agent_names, channel_names, self.label_names)

    def rollout_pictures(self, episode: Any, agent_names, channel_names) -> dict[str, Any]:
        """None: :meth:`describe_example` already gives W&B the image panels."""
        return {}

    def probe_targets(self, dataset, results, pointed, examples, handler) -> dict:
        """The label and the image's class (of the source dataset)."""
        classes = self.strata(dataset)["class"][results.datapoint_id]
        return {
            **super().probe_targets(dataset, results, pointed, examples, handler),
            "class": (classes, classes >= 0),
        }
