"""Image-classification agents: convolutional bodies, latent-pixel selector, decider, value.

Body (per agent): the message history, upsampled (nearest) from the latent pixel grid to
the image's size, is stacked with the image's channels; a per-pixel MLP maps them to
``initial_num_channels``; each block group runs its blocks (a 3x3 convolution and activation,
or a residual block; the group's first block doubles the channels) and halves the grid by
2x2 max pooling. The current message (zero in round 0) is appended to the latent map, and
one linear layer gives each latent pixel a representation; the image's representation is
their mean.

Shape letters: ``T`` rounds, ``Cv`` visible channels, ``P`` positions, ``c, H, W`` the image,
``h, w`` the latent grid, ``d`` the representation width.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nip.agents import CombinedPolicy, CombinedValue, seeded, visible_channels
from nip.protocols.base import ProtocolHandler
from nip.scenarios.base import agent_config
from nip.scenarios.image_classification.config import (
    BuildingBlock,
    ImageClassificationAgentConfig,
    ImageClassificationScenarioConfig,
)
from nip.scenarios.image_classification.dataset import normalise_images
from nip.scenarios.image_classification.environment import latent_shape
from nip.utils.nn import activation_module, mlp, orthogonal_init_


class ResidualBlock(nn.Module):
    """A ResNet basic block without normalisation: two 3x3 convolutions and a skip."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, activation: str):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size, padding="same")
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size, padding="same")
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.act = activation_module(activation)

    def forward(self, h: Tensor) -> Tensor:
        """``[B, c_in, H, W] -> [B, c_out, H, W]``."""
        return self.act(self.conv2(self.act(self.conv1(h))) + self.skip(h))


class ImageClassificationAgentBody(nn.Module):
    """One agent's body: message history and image to latent-pixel and image representations.

    Parameters
    ----------
    cfg : ImageClassificationAgentConfig
        Architecture.
    image_shape : tuple of int
        ``(c, H, W)``.
    num_block_groups, initial_num_channels, d_representation : int
        Scenario settings.
    max_message_rounds, num_visible_channels, message_size : int
        ``T``, ``Cv``, ``P``.
    """

    def __init__(
        self,
        cfg: ImageClassificationAgentConfig,
        *,
        image_shape: tuple[int, int, int],
        num_block_groups: int,
        initial_num_channels: int,
        d_representation: int,
        max_message_rounds: int,
        num_visible_channels: int,
        message_size: int,
    ):
        super().__init__()
        c, height, width = image_shape
        self.image_size = (height, width)
        self.num_message_channels = num_visible_channels * message_size
        d_in = max_message_rounds * self.num_message_channels + c
        # The per-pixel MLP as 1x1 convolutions.
        self.pixel_mlp = nn.Sequential(
            nn.Conv2d(d_in, d_in, 1),
            activation_module(cfg.activation),
            nn.Conv2d(d_in, initial_num_channels, 1),
        )
        layers: list[nn.Module] = []
        channels = initial_num_channels
        for _ in range(num_block_groups):
            for block in range(cfg.num_blocks_per_group):
                c_out = 2 * channels if block == 0 else channels
                if cfg.building_block_type == BuildingBlock.residual:
                    layers.append(ResidualBlock(channels, c_out, cfg.kernel_size, cfg.activation))
                else:
                    layers.append(nn.Conv2d(channels, c_out, cfg.kernel_size, padding="same"))
                    layers.append(activation_module(cfg.activation))
                channels = c_out
            layers.append(nn.MaxPool2d(2))
        self.blocks = nn.Sequential(*layers)
        self.representation_encoder = nn.Linear(
            channels + self.num_message_channels, d_representation
        )

    def forward(
        self, x: Tensor, message: Tensor, image: Tensor, round: Tensor, *, need_items: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """Compute the representations.

        Parameters
        ----------
        x : Tensor
            float ``[B, T, Cv, P, h, w]``: normalised message history.
        message : Tensor
            float ``[B, Cv, P, h, w]``: the previous round's normalised message.
        image : Tensor
            uint8 ``[B, c, H, W]``.
        round : Tensor
            long ``[B]``.
        need_items : bool
            Also return the latent-pixel representations.

        Returns
        -------
        image_repr : Tensor
            float ``[B, d]``.
        pixel_repr : Tensor or None
            float ``[B, h, w, d]``.
        """
        b, t, cv, p, h, w = x.shape
        history = F.interpolate(
            x.reshape(b, t * cv * p, h, w), size=self.image_size, mode="nearest"
        )
        features = torch.cat([history, normalise_images(image).to(x.dtype)], dim=1)
        latent = self.blocks(self.pixel_mlp(features))  # [B, channels, h, w]
        # No message has been sent in round 0, whatever its normalised encoding reads.
        current = message.reshape(b, cv * p, h, w) * (round != 0).to(x.dtype)[:, None, None, None]
        latent = torch.cat([latent, current], dim=1).permute(0, 2, 3, 1)  # [B, h, w, ch]
        pixel_repr = self.representation_encoder(latent)  # [B, h, w, d]
        image_repr = pixel_repr.mean(dim=(1, 2))
        return image_repr, pixel_repr if need_items else None


def _image_level_input(
    image_repr: Tensor, round: Tensor, include_round: bool, num_round_classes: int
) -> Tensor:
    if not include_round:
        return image_repr
    return torch.cat([image_repr, F.one_hot(round, num_round_classes).to(image_repr.dtype)], -1)


class ImageClassificationPolicyHead(nn.Module):
    """Latent-pixel selector (all agents) and decider (verifiers only)."""

    def __init__(
        self,
        cfg: ImageClassificationAgentConfig,
        *,
        is_verifier: bool,
        d_representation: int,
        max_message_rounds: int,
        num_visible_channels: int,
        message_size: int,
    ):
        super().__init__()
        self.num_visible_channels = num_visible_channels
        self.message_size = message_size
        self.num_round_classes = max_message_rounds + 1
        self.include_round = cfg.include_round_in_decider
        self.pixel_selector = mlp(
            d_representation,
            cfg.d_latent_pixel_selector,
            num_visible_channels * message_size,
            cfg.num_latent_pixel_selector_layers,
            cfg.activation,
        )
        self.decider: nn.Module | None = None
        if is_verifier:
            d_in = d_representation + (self.num_round_classes if self.include_round else 0)
            self.decider = mlp(d_in, cfg.d_decider, 3, cfg.num_decider_layers, cfg.activation)

    def forward(
        self, image_repr: Tensor, pixel_repr: Tensor, round: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``[B, d]``, ``[B, h, w, d]``, ``[B]`` -> pixel logits ``[B, Cv, P, h*w]`` (pixel
        ``k`` is row ``k // w``, column ``k % w``) and decision logits ``[B, 3]``."""
        b = round.shape[0]
        per_pixel = self.pixel_selector(pixel_repr.flatten(1, 2))  # [B, h*w, Cv*P]
        logits = per_pixel.transpose(1, 2).reshape(
            b, self.num_visible_channels, self.message_size, -1
        )
        if self.decider is None:
            return logits, image_repr.new_zeros(b, 3)
        inp = _image_level_input(image_repr, round, self.include_round, self.num_round_classes)
        return logits, self.decider(inp)


class ImageClassificationValueHead(nn.Module):
    """Image-level MLP giving a scalar value."""

    def __init__(
        self, cfg: ImageClassificationAgentConfig, *, d_representation: int, max_message_rounds: int
    ):
        super().__init__()
        self.num_round_classes = max_message_rounds + 1
        self.include_round = cfg.include_round_in_value
        d_in = d_representation + (self.num_round_classes if self.include_round else 0)
        self.mlp = mlp(d_in, cfg.d_value, 1, cfg.num_value_layers, cfg.activation)

    def forward(self, image_repr: Tensor, round: Tensor) -> Tensor:
        """``[B, d]``, ``[B]`` -> ``[B]``."""
        inp = _image_level_input(image_repr, round, self.include_round, self.num_round_classes)
        return self.mlp(inp).squeeze(-1)


def build_combined_agents(
    protocol_handler: ProtocolHandler,
    scenario_cfg: ImageClassificationScenarioConfig,
    image_shape: tuple[int, int, int],
    seed: int,
    use_shared_body: bool,
) -> tuple[CombinedPolicy, CombinedValue]:
    """The combined policy and value modules; every part orthogonally initialised, seeded by
    ``derive_seed(seed, agent, part)`` (parts: ``actor``, ``critic`` bodies, ``policy_head``,
    ``value_head``; a shared body is the actor body)."""
    s = scenario_cfg
    rounds = protocol_handler.max_message_rounds
    visible = visible_channels(protocol_handler)

    def bodies(role: str) -> nn.ModuleDict:
        out = nn.ModuleDict()
        for name, vis in zip(protocol_handler.agent_names, visible, strict=True):
            cfg = agent_config(protocol_handler, s, name)
            if cfg.random:
                continue
            with seeded(seed, name, role):
                body = ImageClassificationAgentBody(
                    cfg,
                    image_shape=image_shape,
                    num_block_groups=s.num_block_groups,
                    initial_num_channels=s.initial_num_channels,
                    d_representation=s.d_representation,
                    max_message_rounds=rounds,
                    num_visible_channels=len(vis),
                    message_size=s.message_size,
                )
                orthogonal_init_(body)
            out[name] = body
        return out

    actor_bodies = bodies("actor")
    critic_bodies = actor_bodies if use_shared_body else bodies("critic")
    heads, value_heads = nn.ModuleDict(), nn.ModuleDict()
    for name, vis in zip(protocol_handler.agent_names, visible, strict=True):
        cfg = agent_config(protocol_handler, s, name)
        if cfg.random:
            continue
        with seeded(seed, name, "policy_head"):
            heads[name] = ImageClassificationPolicyHead(
                cfg,
                is_verifier=protocol_handler.has_decider(name),
                d_representation=s.d_representation,
                max_message_rounds=rounds,
                num_visible_channels=len(vis),
                message_size=s.message_size,
            )
            orthogonal_init_(heads[name])
        with seeded(seed, name, "value_head"):
            value_heads[name] = ImageClassificationValueHead(
                cfg, d_representation=s.d_representation, max_message_rounds=rounds
            )
            orthogonal_init_(value_heads[name])
    items = latent_shape(image_shape, s.num_block_groups)
    policy = CombinedPolicy(protocol_handler, actor_bodies, heads, items, s.message_size)
    value = CombinedValue(protocol_handler, critic_bodies, value_heads, items)
    return policy, value
