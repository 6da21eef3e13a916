"""Evaluate a policy on every pair of a dataset: one complete episode per pair and pass."""

from dataclasses import dataclass, fields

import torch
from tensordict.nn import TensorDictModuleBase
from torch import Tensor
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type, step_mdp

from nip.episodes import SILENT, pointed_items
from nip.operators import EPISODE_REWARD_KEY
from nip.protocols.base import ACCEPT, CONTINUE, REJECT
from nip.stats import decided_correctly, outcome_stats

# Outcomes episodes can be picked by; "wrong" is the complement of "right", as in accuracy
# (an episode in which the verifier never decided counts as wrong).
OUTCOMES = ("wrong", "right", "accepted", "rejected", "ran_out")


@dataclass
class EpisodeResults:
    """One row per evaluated episode.

    Attributes
    ----------
    datapoint_id : Tensor
        long ``[E]``.
    decision : Tensor
        long ``[E]``: the decision the verifier took in the episode (0 reject, 1 accept), or
        2 if it never decided.
    terminated : Tensor
        bool ``[E]``: the episode ran out of rounds.
    y : Tensor
        long ``[E]``: the label (1: accepting is right).
    length : Tensor
        long ``[E]``: rounds played.
    reward : Tensor
        float ``[E, A]``: each agent's return over the whole episode.
    """

    datapoint_id: Tensor
    decision: Tensor
    terminated: Tensor
    y: Tensor
    length: Tensor
    reward: Tensor

    @classmethod
    def concatenate(cls, parts: list["EpisodeResults"]) -> "EpisodeResults":
        """All episodes of several results, in order."""
        return cls(*(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(cls)))

    @property
    def correct(self) -> Tensor:
        """bool ``[E]``: the verifier decided, and rightly."""
        return decided_correctly(self.decision, self.y)

    def outcome(self, only: str) -> Tensor:
        """bool ``[E]``: the episodes of outcome ``only`` (one of :data:`OUTCOMES`)."""
        return {
            "right": self.correct,
            "wrong": ~self.correct,
            "accepted": self.decision == ACCEPT,
            "rejected": self.decision == REJECT,
            "ran_out": self.terminated,
        }[only]


@torch.no_grad()
def run_episodes(
    env: EnvBase,
    policy: TensorDictModuleBase,
    num_episodes: int,
    *,
    greedy: bool = False,
) -> EpisodeResults:
    """Play ``num_episodes`` complete episodes, ``env.batch_size[0]`` at a time.

    The environment must serve its dataset in order (``shuffle=False``) so that episode ``i``
    is about datapoint ``i mod len(dataset)``, and be wrapped with
    :func:`nip.operators.add_episode_return`. Rows are reset together and stepped for the
    maximum number of rounds; each row's first episode end is recorded, with the
    environment's own record of the verifier's decision and of the returns.

    Parameters
    ----------
    env : EnvBase
        The evaluation environment.
    policy : TensorDictModuleBase
        The agents' probabilistic actor.
    num_episodes : int
        How many episodes to play.
    greedy : bool
        Play every agent's most likely action instead of sampling from the policy (the
        default, as in training). Sampling draws from the global torch generator, which the
        caller seeds.
    """
    return _play(env, policy, num_episodes, greedy=greedy, record=False)[0]


@torch.no_grad()
def record_episodes(
    env: EnvBase,
    policy: TensorDictModuleBase,
    num_episodes: int,
    *,
    greedy: bool = False,
) -> tuple[EpisodeResults, Tensor]:
    """:func:`run_episodes`, also keeping what each agent pointed at (the examples are
    :meth:`nip.environment.ProtocolEnvironment.examples` of the results' datapoints).

    Returns
    -------
    results : EpisodeResults
        As :func:`run_episodes` gives.
    pointed : Tensor
        long ``[E, T, A, C, P]``: per episode, round, agent, channel and position, the item
        the agent pointed at, or :data:`nip.episodes.SILENT` where its message was not sent
        (not its turn, finished, or after the episode's end).
    """
    return _play(env, policy, num_episodes, greedy=greedy, record=True)


def _play(env, policy, num_episodes: int, *, greedy: bool, record: bool):
    """The loop of :func:`run_episodes` and :func:`record_episodes`."""
    base = env.base_env if hasattr(env, "base_env") else env
    max_rounds, handler = base.num_rounds, base.protocol_handler
    num_envs = env.batch_size[0]
    chunks: list[EpisodeResults] = []
    pointed_chunks: list[Tensor] = []
    mode = ExplorationType.DETERMINISTIC if greedy else ExplorationType.RANDOM
    with set_exploration_type(mode):
        for _ in range(-(-num_episodes // num_envs)):
            td = env.reset()
            dev = td.device
            alive = torch.ones(num_envs, dtype=torch.bool, device=dev)
            decision = torch.full((num_envs,), CONTINUE, dtype=torch.long, device=dev)
            terminated = torch.zeros(num_envs, dtype=torch.bool, device=dev)
            length = torch.zeros(num_envs, dtype=torch.long, device=dev)
            returns = torch.zeros(td[EPISODE_REWARD_KEY].shape[:-1], device=dev)
            datapoint_id, y = td["datapoint_id"].clone(), td["y"].clone()
            if record:
                shape = (num_envs, max_rounds, base.num_agents, base.num_channels)
                pointed = torch.full((*shape, base.message_size), SILENT, dtype=torch.long)
            for r in range(max_rounds):
                td = policy(td)
                if record:
                    # The environment's own rule for whose message is sent (see its _step);
                    # after an episode's end every agent is done, so nothing is recorded.
                    active = handler.active_mask(td["round"], td["seed"])
                    active = active & ~td["agents", "agent_done"][..., None]
                    pointed[:, r] = pointed_items(
                        td["agents", "action"], active, base.num_channels, base.message_size
                    ).cpu()
                td = env.step(td)
                nxt = td["next"]
                ending = nxt["done"][:, 0] & alive
                decision = torch.where(ending, nxt["verifier_decision"], decision)
                terminated = torch.where(ending, nxt["terminated"][:, 0], terminated)
                length = torch.where(ending, nxt["round"], length)
                returns = torch.where(ending[:, None], nxt[EPISODE_REWARD_KEY][..., 0], returns)
                alive = alive & ~ending
                td = step_mdp(td)
                if not alive.any():
                    break
            chunks.append(EpisodeResults(datapoint_id, decision, terminated, y, length, returns))
            if record:
                pointed_chunks.append(pointed)
    merged = EpisodeResults.concatenate(chunks)
    results = EpisodeResults(
        *(getattr(merged, f.name)[:num_episodes].cpu() for f in fields(merged))
    )
    if not record:
        return results, None
    return results, torch.cat(pointed_chunks)[:num_episodes]


def episode_stats(
    results: EpisodeResults,
    agent_names: tuple[str, ...],
    strata: dict[str, Tensor] | None = None,
    prefix: str = "test_",
    *,
    label_names: tuple[str, str],
) -> dict[str, float]:
    """Accuracy overall, on each label and on each stratum's values, and how
    episodes ended (see :func:`nip.stats.outcome_stats`).

    Parameters
    ----------
    results : EpisodeResults
        Evaluated episodes.
    agent_names : tuple of str
        Agent order of ``results.reward``.
    strata : dict of Tensor, optional
        Named long ``[dataset size]`` strata of the dataset (the scenario's, e.g. GI's WL
        score; -1: in none), to break accuracy down by each value:
        ``<prefix>accuracy_<name>_<value>``.
    prefix : str
        Prepended to every statistic's name.
    label_names : tuple of str
        The scenario's names of labels 0 and 1: ``<prefix>accuracy_<name>`` per label.
    """
    correct = results.correct.double()
    stats = outcome_stats(
        results.decision, results.y, results.terminated, prefix, label_names=label_names
    )
    stats[f"{prefix}mean_episode_length"] = results.length.double().mean().item()
    for label, name in ((1, label_names[1]), (0, label_names[0])):
        mask = results.y == label
        if mask.any():
            stats[f"{prefix}accuracy_{name}"] = correct[mask].mean().item()
    for i, name in enumerate(agent_names):
        stats[f"{name}.{prefix}mean_episode_reward"] = results.reward[:, i].double().mean().item()
    for name, values in (strata or {}).items():
        values = values.to(results.datapoint_id.device)[results.datapoint_id]
        for value in torch.unique(values[values >= 0]).tolist():
            mask = values == value
            stats[f"{prefix}accuracy_{name}_{value}"] = correct[mask].mean().item()
    return stats
