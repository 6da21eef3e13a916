"""Freezing an agent's parameters between iterations (for agent update schedules)."""

import torch


class ParamGroupFreezer:
    """Take agents' parameter groups out of the optimizer and out of autograd.

    A frozen agent's groups leave ``optimizer.param_groups`` (their Adam state is kept for
    when they return) and its parameters stop requiring gradients, so they neither
    accumulate gradients while frozen nor count in gradient-norm clipping.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        The optimizer holding every agent's groups.
    agent_groups : dict
        Agent name -> that agent's parameter-group dicts (as in ``optimizer.param_groups``).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, agent_groups: dict[str, list[dict]]):
        self.optimizer = optimizer
        self.agent_groups = agent_groups
        self.frozen: set[str] = set()

    def freeze(self, agent: str) -> None:
        """Stop updating ``agent``."""
        if agent in self.frozen:
            return
        ids = {id(g) for g in self.agent_groups[agent]}
        self.optimizer.param_groups = [g for g in self.optimizer.param_groups if id(g) not in ids]
        for group in self.agent_groups[agent]:
            for p in group["params"]:
                p.grad = None
                p.requires_grad_(False)
        self.frozen.add(agent)

    def unfreeze(self, agent: str) -> None:
        """Resume updating ``agent``."""
        if agent not in self.frozen:
            return
        for group in self.agent_groups[agent]:
            for p in group["params"]:
                p.requires_grad_(True)
            self.optimizer.param_groups.append(group)
        self.frozen.discard(agent)
