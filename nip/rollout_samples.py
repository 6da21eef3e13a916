"""A few complete episodes as a W&B table, so researchers can read what the agents said."""

from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase

from nip.episodes import DECISIONS, episode_from_frames
from nip.protocols.base import ProtocolHandler


def sample_episodes(
    rollouts: TensorDictBase,
    protocol_handler: ProtocolHandler,
    scenario: Any,
    num_samples: int,
    generator: torch.Generator,
    strata: dict[str, torch.Tensor] | None = None,
) -> list[dict[str, Any]]:
    """Up to ``num_samples`` episodes that start and end within the ``[B, S]`` batch.

    Each is a dict: the label, the verifier's decision, every agent's return, the
    scenario's description of the example (``example``: e.g. both graphs' edge lists), the
    transcript (per round: who sent what, in the scenario's words, in which channel) and
    the scenario's pictures of the episode (``pictures``, see
    :meth:`nip.scenarios.base.Scenario.rollout_pictures`), whose titles show the example's
    values of ``strata`` (the dataset's, by datapoint) where given.
    """
    # One copy to the host: the loop below reads single frames, and ``generator`` is a CPU one.
    rollouts = rollouts.cpu()
    done = rollouts["next", "done"][..., 0]
    rounds = rollouts["round"]
    steps = torch.arange(done.shape[1], device=done.device)
    complete = done & (steps >= rounds)  # the episode's first frame is in this batch
    rows, cols = complete.nonzero(as_tuple=True)
    if len(rows) == 0:
        return []
    pick = torch.randperm(len(rows), generator=generator)[:num_samples]
    agents, channels = protocol_handler.agent_names, protocol_handler.channel_names
    samples = []
    for i in pick.tolist():  # a handful of episodes for display, not a hot path
        b, s = rows[i].item(), cols[i].item()
        frame = rollouts[b, s]
        length = frame["round"].item() + 1
        datapoint = frame["datapoint_id"].item()
        episode = episode_from_frames(
            rollouts[b, s - length + 1 : s + 1],
            protocol_handler,
            scenario.example_keys,
            {k: int(v[datapoint]) for k, v in (strata or {}).items()},
        )
        transcript = [
            f"r{r} {agents[a]} @{channels[c]}: {item}"
            for r, c, a, message in episode.spoken()
            for item in scenario.describe_message(message)
        ]
        samples.append(
            {
                "datapoint_id": datapoint,
                "label": scenario.label_names[episode.label],
                "decision": DECISIONS[episode.decision],
                "length": length,
                "returns": dict(zip(agents, episode.returns.tolist(), strict=True)),
                "transcript": "; ".join(transcript),
                "example": scenario.describe_example(frame),
                "pictures": scenario.rollout_pictures(episode, agents, channels),
            }
        )
    return samples


def log_rollout_samples(run: Any, samples: list[dict[str, Any]], iteration: int) -> None:
    """Log the samples to W&B at ``iteration``: the table ``rollout_samples`` (text), and for
    each image that describes an example (e.g. ``image``) and each of the scenario's
    pictures of an episode (e.g. GI's ``episode``) the list ``rollout_samples_<name>`` of
    pictures, captioned with the table's row.

    Images go in lists of their own rather than in the table: wandb (0.31) writes a table's
    images as the bare word "Image", while listed images are stored as files.
    """
    import wandb

    if not samples:
        return
    agents = list(samples[0]["returns"])
    example = samples[0]["example"]
    text_columns = [c for c in example if not isinstance(example[c], np.ndarray)]
    image_columns = [c for c in example if isinstance(example[c], np.ndarray)]
    picture_names = list(samples[0].get("pictures", {}))
    columns = ["iteration", "datapoint_id", "label", "decision", "length"]
    columns += [f"{a}_return" for a in agents] + ["transcript", *text_columns]
    table = wandb.Table(columns=columns)
    images: dict[str, list] = {c: [] for c in [*image_columns, *picture_names]}
    for s in samples:
        table.add_data(
            iteration,
            s["datapoint_id"],
            s["label"],
            s["decision"],
            s["length"],
            *(s["returns"][a] for a in agents),
            s["transcript"],
            *(s["example"][c] for c in text_columns),
        )
        caption = f"datapoint {s['datapoint_id']}: {s['label']}, {s['decision']}"
        for c in image_columns:
            images[c].append(wandb.Image(s["example"][c], caption=caption))
        for c in picture_names:
            images[c].append(wandb.Image(s["pictures"][c], caption=caption))
    logged: dict[str, Any] = {"rollout_samples": table}
    logged.update({f"rollout_samples_{c}": pictures for c, pictures in images.items()})
    run.log(logged, step=iteration)
