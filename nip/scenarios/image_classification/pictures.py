"""Pictures of image-classification episodes: the image once per round, pointed-at latent
pixels tinted."""

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from nip.episodes import SILENT, Episode, message_history

# Rendered rollout-sample images are at least this many pixels high.
RENDER_HEIGHT = 128


def render_messages(image: Tensor, message_history: Tensor) -> np.ndarray:
    """One panel per round that carried a message, side by side: the image (as uint8
    ``[H', W', 3]``, scaled up to about :data:`RENDER_HEIGHT` pixels) with the latent pixels
    that round's messages (``message_history`` ``[T, C, P, h, w]``) point at tinted red.

    A latent pixel covers the ``H // h`` by ``W // w`` block of image pixels it was pooled
    from (the bottom and right rows that pooling dropped are never tinted). An episode with
    no message yet gives the plain image.
    """
    c, height, width = image.shape
    rgb = image.cpu().expand(3, height, width) if c == 1 else image.cpu()[:3]
    rgb = rgb.permute(1, 2, 0).double()
    h, w = message_history.shape[-2:]
    per_round = message_history.detach().cpu().flatten(1, -3).sum(1) > 0  # [T, h, w]
    rounds = [r for r in range(per_round.shape[0]) if per_round[r].any()] or [None]
    block_h, block_w = height // h, width // w
    red = torch.tensor([255.0, 0.0, 0.0], dtype=torch.float64)
    panels = []
    for r in rounds:
        mask = torch.zeros(height, width, dtype=torch.bool)
        if r is not None:
            cells = per_round[r].repeat_interleave(block_h, 0).repeat_interleave(block_w, 1)
            mask[: h * block_h, : w * block_w] = cells
        panels.append(torch.where(mask[..., None], 0.5 * rgb + 0.5 * red, rgb))
    picture = torch.cat(panels, dim=1)
    scale = max(1, RENDER_HEIGHT // height)
    picture = picture.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    return picture.round().clamp(0, 255).to(torch.uint8).numpy()


def episode_figure(
    episode: Episode,
    agent_names: tuple[str, ...],
    channel_names: tuple[str, ...],
    label_names: tuple[str, str],
) -> Figure:
    """The panels of :func:`render_messages` (one per round that carried a message), each
    captioned with its round and the agents that spoke in it."""
    history = message_history(episode)
    picture = render_messages(episode.example["image"], history)
    spoke = (episode.pointed != SILENT).flatten(2).any(-1)  # [T, A]
    rounds = [r for r in range(history.shape[0]) if history[r].sum() > 0]
    height, width = picture.shape[:2]
    figure = Figure(figsize=(max(4.0, 1.6 * len(rounds or [0])), 3.2))
    ax = figure.add_subplot()
    ax.imshow(picture)
    if rounds:
        panel = width / len(rounds)
        ax.set_xticks([panel * (i + 0.5) for i in range(len(rounds))])
        ax.set_xticklabels(
            [
                f"r{r}: " + "+".join(a for k, a in enumerate(agent_names) if spoke[r, k])
                for r in rounds
            ],
            fontsize=7,
        )
    else:
        ax.set_xticks([])
    ax.set_yticks([])
    figure.suptitle(episode.title(label_names, agent_names), fontsize=8)
    figure.subplots_adjust(top=0.78, bottom=0.12)
    return figure
