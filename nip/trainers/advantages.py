"""Per-agent episode ends and advantages of a collected ``[envs, time]`` batch."""

import torch
from tensordict import TensorDictBase
from torch import nn

from nip.operators import VALUE_KEY


def mark_agent_ends(data: TensorDictBase, num_agents: int, bootstrap_at_decisions: bool) -> None:
    """Give every agent done and terminated flags (``[..., A, 1]``) for GAE, in place.

    Every episode end is a true terminal state of this game: the verifier decided, or the
    round limit (which agents observe through ``round``) was reached. So no agent
    bootstraps past an episode end, whichever way it ended. (The environment's own
    ``terminated`` flag keeps its narrower meaning, "ran out of rounds", for statistics.)
    ``bootstrap_at_decisions`` restores the original code's semantics: only running out of
    rounds is terminal.
    """
    shape = (*data.batch_size, num_agents, 1)
    # An agent may finish before the episode ends (zero knowledge's adversarial verifier).
    done = data["next", "done"].unsqueeze(-2).expand(shape)
    done = done | data["next", "agents", "agent_done"].unsqueeze(-1)
    data.set(("next", "agents", "done"), done)
    if bootstrap_at_decisions:
        terminated = data["next", "terminated"].unsqueeze(-2).expand(shape)
        data.set(("next", "agents", "terminated"), terminated)
    else:
        data.set(("next", "agents", "terminated"), done)


@torch.no_grad()
def value_pass_advantages(
    data: TensorDictBase, value_operator, gae: nn.Module, bootstrap_at_decisions: bool
) -> None:
    """Values, next values, advantages and value targets of a batch, in place.

    The value network runs once, over ``[obs_0, ..., obs_{T-1}, next_obs_{T-1}]`` of each
    environment, instead of once over the observations and once over the next ones: within
    an episode ``next_obs[t]`` is ``obs[t+1]``, and after an episode end the next value is
    never read (every end is terminal for every agent, see :func:`mark_agent_ends`). GAE
    then sees exactly the values two passes would give, for ``(T + 1) / 2T`` of the cost.
    """
    time_dim = data.ndim - 1
    steps = data.shape[time_dim]
    in_keys = value_operator.in_keys
    inputs = torch.cat(
        [data.select(*in_keys), data["next"].select(*in_keys)[..., steps - 1 : steps]],
        dim=time_dim,
    )
    values = value_operator(inputs).get(VALUE_KEY)
    data.set(VALUE_KEY, values.narrow(time_dim, 0, steps))
    next_values = values.narrow(time_dim, 1, steps)
    if bootstrap_at_decisions:
        # Bootstrapping after a decision reads the value of the observation after it,
        # which is not the next frame's (a reset): evaluate those observations too.
        next_values = value_operator(data["next"].select(*in_keys)).get(VALUE_KEY)
    data.set(("next", *VALUE_KEY), next_values)
    gae(data)
