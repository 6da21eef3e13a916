"""Single episodes for display: who pointed at what in which round, how the episode ended.

Both the ``nip.visualise`` pictures and the W&B rollout samples draw an :class:`Episode`;
a scenario turns one into a figure (:meth:`nip.scenarios.base.Scenario.episode_figure`).
"""

from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")  # runs on clusters without a display
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor  # noqa: E402

from nip.operators import EPISODE_REWARD_KEY  # noqa: E402

# The verifier's decision in an episode (2: it never decided).
DECISIONS = ("reject", "accept", "none")
# Marks an agent that did not speak in a channel in a round.
SILENT = -1


@dataclass
class Episode:
    """One complete episode, as the environment recorded it.

    Attributes
    ----------
    datapoint_id : int
        The example's index in its dataset.
    label : int
        1: accepting is right.
    decision : int
        The verifier's decision: 0 reject, 1 accept, 2 never decided.
    terminated : bool
        The episode ran out of rounds.
    length : int
        Rounds played.
    returns : Tensor
        float ``[A]``: each agent's return.
    pointed : Tensor
        long ``[T, A, C, P]``: the item each agent pointed at per round, channel and
        position (an index into the scenario's items, e.g. ``graph * N + node``), or
        :data:`SILENT`.
    example : dict of Tensor
        The example's observations (GI: ``adjacency``, ``node_mask``; images: ``image``).
    strata : dict of int
        The example's value of each of the scenario's strata (GI: ``wl_score``; -1: none).
    item_shape : tuple of int
        The shape of the example's items that ``pointed`` indexes (GI: ``(2, N)``).
    """

    datapoint_id: int
    label: int
    decision: int
    terminated: bool
    length: int
    returns: Tensor
    pointed: Tensor
    example: dict[str, Tensor]
    strata: dict[str, int]
    item_shape: tuple[int, ...]

    @classmethod
    def recorded(
        cls,
        recording: tuple[Any, Tensor, dict[str, Tensor]],
        i: int,
        strata: dict[str, Tensor],
        item_shape: tuple[int, ...],
    ) -> "Episode":
        """Episode ``i`` of ``(results, pointed, examples)`` as
        :func:`nip.evaluation.record_episodes` and :meth:`ProtocolEnvironment.examples`
        give them; ``strata`` are the dataset's (by datapoint)."""
        results, pointed, examples = recording
        datapoint = int(results.datapoint_id[i])
        return cls(
            datapoint_id=datapoint,
            label=int(results.y[i]),
            decision=int(results.decision[i]),
            terminated=bool(results.terminated[i]),
            length=int(results.length[i]),
            returns=results.reward[i],
            pointed=pointed[i],
            example={k: v[i] for k, v in examples.items()},
            strata={k: int(v[datapoint]) for k, v in strata.items()},
            item_shape=item_shape,
        )

    @property
    def right(self) -> bool:
        """The verifier decided, and rightly."""
        return self.decision == self.label

    def spoken(self) -> list[tuple[int, int, int, Tensor]]:
        """``(round, channel, agent, message)`` for every message sent, in that order;
        ``message`` is the one-hot ``[P, *item_shape]`` items, as
        :meth:`nip.scenarios.base.Scenario.describe_message` reads them."""
        messages = one_hot_items(self.pointed, int(np.prod(self.item_shape)))
        messages = messages.unflatten(-1, self.item_shape)  # [T, A, C, P, *items]
        sent = (self.pointed != SILENT).any(-1).transpose(1, 2)  # [T, C, A]
        return [(r, c, a, messages[r, a, c]) for r, c, a in sent.nonzero().tolist()]

    def title(self, label_names: tuple[str, str], agent_names: tuple[str, ...]) -> str:
        """One line: datapoint, label, decision (right or wrong), rounds, strata, returns."""
        verdict = "right" if self.right else "wrong"
        parts = [
            f"datapoint {self.datapoint_id}",
            f"label {label_names[self.label]}",
            f"verifier {DECISIONS[self.decision]} ({verdict})",
            f"{self.length} rounds" + (", ran out" if self.terminated else ""),
        ]
        parts += [f"{name} {value}" for name, value in self.strata.items() if value >= 0]
        returns = ", ".join(
            f"{a} {r:+.2f}" for a, r in zip(agent_names, self.returns.tolist(), strict=True)
        )
        return " | ".join(parts) + f"\nreturns: {returns}"


def pointed_items(action: Tensor, active: Tensor, num_channels: int, size: int) -> Tensor:
    """The items the agents' actions point at where the agent speaks, else :data:`SILENT`.

    Parameters
    ----------
    action : Tensor
        long ``[..., A, C * P + 1]``: the environment's action (items, then the decision).
    active : Tensor
        bool ``[..., A, C]``: the agent's message in that channel is sent.
    num_channels, size : int
        ``C`` and ``P``.

    Returns
    -------
    Tensor
        long ``[..., A, C, P]``.
    """
    items = action[..., : num_channels * size].unflatten(-1, (num_channels, size))
    return torch.where(active[..., None], items, torch.full_like(items, SILENT))


def episode_from_frames(
    frames: Any, protocol_handler: Any, example_keys: tuple[str, ...], strata: dict[str, int]
) -> Episode:
    """The :class:`Episode` whose ``[L]`` collected frames (first to last step) are ``frames``.

    Who spoke follows the environment's rule: the protocol's active agents that have not
    finished.
    """
    last = frames[-1]
    history = last["next", "message_history"]  # [T, C, P, *items]
    num_rounds, num_channels, size = history.shape[:3]
    active = protocol_handler.active_mask(frames["round"], frames["seed"])
    active = active & ~frames["agents", "agent_done"][..., None]
    pointed = torch.full(
        (num_rounds, protocol_handler.num_agents, num_channels, size), SILENT, dtype=torch.long
    )
    pointed[frames["round"]] = pointed_items(frames["agents", "action"], active, num_channels, size)
    return Episode(
        datapoint_id=int(last["datapoint_id"]),
        label=int(last["y"]),
        decision=int(last["next", "verifier_decision"]),
        terminated=bool(last["next", "terminated"].any()),
        length=len(frames),
        returns=last["next", *EPISODE_REWARD_KEY][..., 0].clone(),
        pointed=pointed,
        example={k: last[k] for k in example_keys},
        strata=strata,
        item_shape=tuple(history.shape[3:]),
    )


def one_hot_items(pointed: Tensor, num_items: int) -> Tensor:
    """float ``[..., num_items]``: the one-hot of each item in ``pointed``, zeros where
    :data:`SILENT`."""
    one_hot = torch.nn.functional.one_hot(pointed.clamp(min=0), num_items).float()
    return one_hot * (pointed != SILENT)[..., None]


def message_history(episode: Episode) -> Tensor:
    """float ``[T, C, P, *item_shape]``: the one-hot items sent per round, summed over agents,
    as the environment's ``message_history`` holds them."""
    one_hot = one_hot_items(episode.pointed, int(np.prod(episode.item_shape)))  # [T, A, C, P, K]
    return one_hot.sum(1).unflatten(-1, episode.item_shape)


def agent_colours(agent_names: tuple[str, ...]) -> dict[str, str]:
    """A distinct colour (hex) per agent, in agent order, the same in every picture."""
    palette = matplotlib.colormaps["tab10"].colors
    return {name: matplotlib.colors.to_hex(palette[i % 10]) for i, name in enumerate(agent_names)}


def figure_pixels(figure: Figure) -> np.ndarray:
    """The figure rendered as uint8 ``[H, W, 3]``."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def figure_png(figure: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    from io import BytesIO

    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
