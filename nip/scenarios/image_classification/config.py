"""Schema of ``conf/scenario/image_classification.yaml`` (the IC scenario and its agents)."""

import enum
from dataclasses import dataclass, field
from typing import ClassVar

from nip.config.agent import AgentConfig
from nip.errors import require


class BuildingBlock(enum.StrEnum):
    """``scenario.<agent>.building_block_type``: the block the convolutional bodies repeat."""

    conv2d = enum.auto()
    residual = enum.auto()


class Binarification(enum.StrEnum):
    """``scenario.binarification``: how a dataset's classes become labels 0 and 1."""

    merge = enum.auto()
    select_two = enum.auto()
    random = enum.auto()


@dataclass
class ImageClassificationAgentConfig(AgentConfig):
    """Architecture of one image-classification agent (a convolutional body and MLP heads).

    Beyond :class:`~nip.config.agent.AgentConfig`:

    Attributes
    ----------
    building_block_type : BuildingBlock
        ``conv2d`` (3x3 convolution + activation) or ``residual`` (a ResNet basic block).
    num_blocks_per_group : int
        Blocks in each block group; the first of a group doubles the channels, each group
        ends with 2x2 max pooling.
    kernel_size : int
        Convolution kernel size (odd: same-size convolutions).
    d_latent_pixel_selector, num_latent_pixel_selector_layers : int
        The MLP giving each latent pixel its logits.
    """

    building_block_type: BuildingBlock = BuildingBlock.conv2d
    num_blocks_per_group: int = 2
    kernel_size: int = 3
    d_latent_pixel_selector: int = 16
    num_latent_pixel_selector_layers: int = 2

    SIZE_FIELDS = (
        *AgentConfig.SIZE_FIELDS,
        "num_blocks_per_group",
        "kernel_size",
        "d_latent_pixel_selector",
        "num_latent_pixel_selector_layers",
    )

    def check(self, role: str, shared_body: bool) -> None:  # noqa: D102
        super().check(role, shared_body)
        require(
            self.kernel_size % 2 == 1,
            f"scenario.{role}.kernel_size must be odd (same-size convolutions), "
            f"got {self.kernel_size}",
        )


@dataclass
class ImageClassificationScenarioConfig:
    """Image classification (``scenario=image_classification``): data and agents.

    Attributes
    ----------
    dataset : str
        ``digits`` (scikit-learn's bundled 8x8 digits: offline), ``mnist``,
        ``fashion_mnist``, ``kmnist``, ``cifar10``, ``cifar100`` or ``svhn``.
    data_dir : str
        Where the published files of the downloadable datasets are (or are downloaded to):
        ``<data_dir>/<dataset>/``.
    binarification : Binarification
        How classes become the yes/no question: ``merge`` (a seeded random half of the
        classes is label 1), ``select_two`` (only ``selected_classes``; label 1 is the
        second) or ``random`` (seeded random labels).
    selected_classes : list of int, optional
        The two classes of ``select_two`` (default: the first two).
    make_balanced : bool
        Drop (seeded) examples of the majority label so both labels are equally common.
    max_train_size : int, optional
        Keep at most this many training examples (seeded choice).
    data_seed : int
        Seeds binarification, balancing and subsampling; separate from the experiment seed
        so runs over several seeds share their data.
    num_block_groups : int
        Block groups of the bodies; each halves the image's height and width: the latent
        pixel grid messages point into.
    initial_num_channels : int
        Channels of the first block group (doubled by each later one).
    d_representation : int
        Width of the image- and latent-pixel-level representations the bodies output.
    message_size : int
        Simultaneous messages (positions) per channel per round.
    prover, verifier : ImageClassificationAgentConfig
        Architectures (the paper's: a deeper prover, a one-block verifier).
    """

    # Where the files are, not what is computed: a run may resume with its data elsewhere.
    RUNTIME_FIELDS: ClassVar[tuple[str, ...]] = ("data_dir",)

    name: str = "image_classification"
    dataset: str = "digits"
    data_dir: str = "${oc.env:NIP_DATA_DIR,'~/.cache/nip/data'}"
    binarification: Binarification = Binarification.merge
    selected_classes: list[int] | None = None
    make_balanced: bool = True
    max_train_size: int | None = None
    data_seed: int = 0
    num_block_groups: int = 1
    initial_num_channels: int = 16
    d_representation: int = 16
    message_size: int = 1
    prover: ImageClassificationAgentConfig = field(
        default_factory=lambda: ImageClassificationAgentConfig(
            num_blocks_per_group=4, num_decider_layers=3
        )
    )
    verifier: ImageClassificationAgentConfig = field(
        default_factory=lambda: ImageClassificationAgentConfig(num_blocks_per_group=1)
    )
