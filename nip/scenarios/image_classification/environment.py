"""The image-classification environment: dialogues about images.

Messages point at latent pixels: the cells of the grid the agents' bodies reduce an image to,
each of ``num_block_groups`` block groups halving height and width (rounding down). A
latent pixel ``k`` is row ``k // W_lat``, column ``k % W_lat``. Everything else (rounds,
turns, rewards, episode bookkeeping) is the shared :class:`~nip.environment.ProtocolEnvironment`.
"""

from typing import Any

import torch
from torch import Tensor
from torchrl.data import Bounded, TensorSpec

from nip.environment import ProtocolEnvironment
from nip.scenarios.image_classification.dataset import ImageDataset


def latent_shape(image_shape: tuple[int, ...], num_block_groups: int) -> tuple[int, int]:
    """``(H_lat, W_lat)`` of ``(C, H, W)`` images after ``num_block_groups`` halvings."""
    _, height, width = image_shape
    return height >> num_block_groups, width >> num_block_groups


class ImageClassificationEnvironment(ProtocolEnvironment):
    """A batched TorchRL environment for interaction protocols over images.

    The image is observed as ``image`` uint8 ``[B, C, H, W]`` (agents scale it); messages are
    ``[B, C_msg, P, H_lat, W_lat]``. See :class:`~nip.environment.ProtocolEnvironment`.

    Parameters
    ----------
    dataset : ImageDataset
        The images served to the episodes.
    protocol_handler, num_envs
        As for every environment.
    num_block_groups : int
        Halvings from the image to the latent pixel grid (``scenario.num_block_groups``).
    **kwargs
        ``message_size``, ``seed``, ``shuffle``, ``device``.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        protocol_handler: Any,
        num_envs: int,
        *,
        num_block_groups: int = 1,
        **kwargs: Any,
    ):
        # Needed by item_shape, which the shared constructor reads to build the specs.
        self.num_block_groups = num_block_groups
        super().__init__(dataset, protocol_handler, num_envs, **kwargs)

    @property
    def item_shape(self) -> tuple[int, ...]:
        """``(H_lat, W_lat)``: the latent pixels."""
        return latent_shape(self.dataset.image_shape, self.num_block_groups)

    @classmethod
    def example_tensors(cls, dataset: ImageDataset) -> dict[str, Tensor]:
        """The images, as published (uint8)."""
        return {"image": dataset.images}

    def example_specs(self, num_envs: int) -> dict[str, TensorSpec]:
        """uint8 ``[B, C, H, W]``."""
        shape = (num_envs, *self.dataset.image_shape)
        return {"image": Bounded(0, 255, shape=shape, dtype=torch.uint8, device=self.device)}

    def _init_kwargs(self) -> dict[str, Any]:
        return {"num_block_groups": self.num_block_groups}
