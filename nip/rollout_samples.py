"""A few complete episodes as a W&B table, so researchers can read what the agents said."""

from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase

from nip.operators import EPISODE_REWARD_KEY
from nip.protocols.base import ProtocolHandler

# The verifier's decision in an episode (2: it never decided).
DECISIONS = ("reject", "accept", "none")


def sample_episodes(
    rollouts: TensorDictBase,
    protocol_handler: ProtocolHandler,
    scenario: Any,
    num_samples: int,
    generator: torch.Generator,
) -> list[dict[str, Any]]:
    """Up to ``num_samples`` episodes that start and end within the ``[B, S]`` batch.

    Each is a dict: the label, the verifier's decision, every agent's return, the
    scenario's description of the example (``example``: e.g. both graphs' edge lists), and
    the transcript (per round: who sent what, in the scenario's words, in which channel).
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
        history = frame["next", "message_history"]  # [T, C, P, 2, N]
        active = protocol_handler.active_mask(torch.arange(length), frame["seed"].expand(length))
        transcript = []
        for r in range(length):
            for c, channel in enumerate(channels):
                speakers = [agents[a] for a in range(len(agents)) if active[r, a, c]]
                for item in scenario.describe_message(history[r, c]):
                    transcript.append(f"r{r} {'+'.join(speakers)} @{channel}: {item}")
        decision = frame["next", "verifier_decision"]
        returns = frame["next", *EPISODE_REWARD_KEY][..., 0]
        samples.append(
            {
                "datapoint_id": frame["datapoint_id"].item(),
                "label": scenario.label_names[frame["y"].item()],
                "decision": DECISIONS[decision.item()],
                "length": length,
                "returns": {a: returns[k].item() for k, a in enumerate(agents)},
                "transcript": "; ".join(transcript),
                "example": scenario.describe_example(frame),
            }
        )
    return samples


def log_rollout_samples(run: Any, samples: list[dict[str, Any]], iteration: int) -> None:
    """Log the samples as the W&B table ``rollout_samples`` at ``iteration``."""
    import wandb

    if not samples:
        return
    agents = list(samples[0]["returns"])
    example_columns = list(samples[0]["example"])
    columns = ["iteration", "datapoint_id", "label", "decision", "length"]
    columns += [f"{a}_return" for a in agents] + ["transcript", *example_columns]
    table = wandb.Table(columns=columns)
    for s in samples:
        example = [
            wandb.Image(value) if isinstance(value, np.ndarray) else value
            for value in (s["example"][c] for c in example_columns)
        ]
        table.add_data(
            iteration,
            s["datapoint_id"],
            s["label"],
            s["decision"],
            s["length"],
            *(s["returns"][a] for a in agents),
            s["transcript"],
            *example,
        )
    run.log({"rollout_samples": table}, step=iteration)
