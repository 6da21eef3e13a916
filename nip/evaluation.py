"""Evaluate a policy on every pair of a dataset: one complete episode per pair and pass."""

import math
from dataclasses import dataclass, fields

import torch
from tensordict.nn import TensorDictModuleBase
from torch import Tensor
from torchrl.envs import EnvBase
from torchrl.envs.utils import step_mdp


@dataclass
class EpisodeResults:
    """One row per evaluated episode.

    Attributes
    ----------
    datapoint_id : Tensor
        long ``[E]``.
    decision : Tensor
        long ``[E]``: the verifier's final decision (2 if the episode ran out of rounds).
    y : Tensor
        long ``[E]``: 1 for isomorphic pairs.
    length : Tensor
        long ``[E]``: rounds played.
    reward : Tensor
        float ``[E, A]``: each agent's return.
    """

    datapoint_id: Tensor
    decision: Tensor
    y: Tensor
    length: Tensor
    reward: Tensor

    @classmethod
    def concatenate(cls, parts: list["EpisodeResults"]) -> "EpisodeResults":
        """All episodes of several results, in order."""
        return cls(*(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(cls)))

    @property
    def correct(self) -> Tensor:
        """bool ``[E]``."""
        return self.decision == self.y


@torch.no_grad()
def run_episodes(
    env: EnvBase,
    policy: TensorDictModuleBase,
    num_episodes: int,
    verifier_index: int,
    num_node_actions: int,
) -> EpisodeResults:
    """Play ``num_episodes`` complete episodes, ``env.batch_size[0]`` at a time.

    The environment must serve its dataset in order (``shuffle=False``) so that episode ``i``
    is about datapoint ``i mod len(dataset)``. Rows are reset together and stepped for the
    maximum number of rounds; each row's first episode end is recorded.
    """
    num_envs = env.batch_size[0]
    max_rounds = env.num_rounds if hasattr(env, "num_rounds") else env.base_env.num_rounds
    chunks: list[EpisodeResults] = []
    for _ in range(math.ceil(num_episodes / num_envs)):
        td = env.reset()
        alive = torch.ones(num_envs, dtype=torch.bool, device=td.device)
        returns = None
        decision = torch.full((num_envs,), 2, dtype=torch.long, device=td.device)
        length = torch.zeros(num_envs, dtype=torch.long, device=td.device)
        datapoint_id, y = td["datapoint_id"].clone(), td["y"].clone()
        for _ in range(max_rounds):
            td = env.step(policy(td))
            reward = td["next", "agents", "reward"][..., 0]
            returns = (
                reward * alive[:, None] if returns is None else returns + reward * alive[:, None]
            )
            ended = td["next", "done"][:, 0] & alive
            decision = torch.where(
                ended, td["agents", "action"][:, verifier_index, num_node_actions], decision
            )
            length = torch.where(ended, td["next", "round"], length)
            alive = alive & ~ended
            td = step_mdp(td)
            if not alive.any():
                break
        chunks.append(EpisodeResults(datapoint_id, decision.long(), y, length, returns))
    merged = EpisodeResults.concatenate(chunks)
    return EpisodeResults(*(getattr(merged, f.name)[:num_episodes].cpu() for f in fields(merged)))


def episode_stats(
    results: EpisodeResults,
    agent_names: tuple[str, ...],
    wl_score: Tensor | None = None,
    prefix: str = "test_",
) -> dict[str, float]:
    """Accuracy overall, on isomorphic and non-isomorphic pairs, and by WL score.

    Parameters
    ----------
    results : EpisodeResults
        Evaluated episodes.
    agent_names : tuple of str
        Agent order of ``results.reward``.
    wl_score : Tensor, optional
        long ``[dataset size]``: the dataset's WL scores, to break accuracy down by score.
    prefix : str
        Prepended to every statistic's name.
    """
    correct = results.correct.double()
    stats = {
        f"{prefix}mean_accuracy": correct.mean().item(),
        f"{prefix}std_accuracy": correct.std(unbiased=False).item(),
        f"{prefix}mean_episode_length": results.length.double().mean().item(),
        f"{prefix}num_episodes": float(len(correct)),
    }
    for label, name in ((1, "isomorphic"), (0, "non_isomorphic")):
        mask = results.y == label
        if mask.any():
            stats[f"{prefix}accuracy_{name}"] = correct[mask].mean().item()
    for i, name in enumerate(agent_names):
        stats[f"{name}.{prefix}mean_episode_reward"] = results.reward[:, i].double().mean().item()
    if wl_score is not None:
        scores = wl_score[results.datapoint_id]
        for score in torch.unique(scores[scores >= 0]).tolist():
            mask = scores == score
            stats[f"{prefix}accuracy_wl_score_{score}"] = correct[mask].mean().item()
    return stats
