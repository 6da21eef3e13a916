"""A few complete episodes as a W&B table, so researchers can read what the agents said."""

from typing import Any

import torch
from tensordict import TensorDictBase

from nip.operators import EPISODE_REWARD_KEY
from nip.protocols.base import ProtocolHandler

# The verifier's decision in an episode (2: it never decided).
DECISIONS = ("reject", "accept", "none")


def sample_episodes(
    rollouts: TensorDictBase,
    protocol_handler: ProtocolHandler,
    num_samples: int,
    generator: torch.Generator,
) -> list[dict[str, Any]]:
    """Up to ``num_samples`` episodes that start and end within the ``[B, S]`` batch.

    Each is a dict: the label, the verifier's decision, every agent's return, both graphs'
    edge lists, and the transcript (per round: who sent which node of which graph in which
    channel).
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
                for graph, node in history[r, c].sum(0).nonzero().tolist():
                    transcript.append(f"r{r} {'+'.join(speakers)} @{channel}: {'AB'[graph]}{node}")
        adjacency, node_mask = frame["adjacency"], frame["node_mask"]
        edges = [
            [
                (i, j)
                for i, j in torch.triu(adjacency[g] & node_mask[g][:, None], 1).nonzero().tolist()
            ]
            for g in range(2)
        ]
        decision = frame["next", "verifier_decision"]
        returns = frame["next", *EPISODE_REWARD_KEY][..., 0]
        samples.append(
            {
                "datapoint_id": frame["datapoint_id"].item(),
                "isomorphic": bool(frame["y"].item()),
                "decision": DECISIONS[decision.item()],
                "length": length,
                "returns": {a: returns[k].item() for k, a in enumerate(agents)},
                "graph_a_edges": str(edges[0]),
                "graph_b_edges": str(edges[1]),
                "transcript": "; ".join(transcript),
            }
        )
    return samples


def log_rollout_samples(run: Any, samples: list[dict[str, Any]], iteration: int) -> None:
    """Log the samples as the W&B table ``rollout_samples`` at ``iteration``."""
    import wandb

    if not samples:
        return
    agents = list(samples[0]["returns"])
    columns = ["iteration", "datapoint_id", "isomorphic", "decision", "length"]
    columns += [f"{a}_return" for a in agents] + ["transcript", "graph_a_edges", "graph_b_edges"]
    table = wandb.Table(columns=columns)
    for s in samples:
        table.add_data(
            iteration,
            s["datapoint_id"],
            s["isomorphic"],
            s["decision"],
            s["length"],
            *(s["returns"][a] for a in agents),
            s["transcript"],
            s["graph_a_edges"],
            s["graph_b_edges"],
        )
    run.log({"rollout_samples": table}, step=iteration)
