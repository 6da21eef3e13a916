"""Taking agents out of an iteration's update (for agent update schedules)."""

import torch


class ParamGroupFreezer:
    """Take agents' parameter groups out of the optimizer and out of autograd.

    A frozen agent's groups leave ``optimizer.param_groups`` (their Adam moments and step
    counts stay as they were, for when they return) and its parameters stop requiring
    gradients, so they neither accumulate gradients while frozen nor count in gradient-norm
    clipping. The groups that remain keep the optimizer's original order, so a state dict
    taken once every agent is back is the same as if none had left.

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
        self.all_groups = list(optimizer.param_groups)
        self.frozen: set[str] = set()

    def set_frozen(self, agents: set[str]) -> None:
        """Freeze exactly ``agents`` (and unfreeze every other agent)."""
        if set(agents) == self.frozen:
            return  # the common case (every iteration of a constant schedule): nothing to do
        for agent in self.agent_groups:
            requires_grad = agent not in agents
            for group in self.agent_groups[agent]:
                for p in group["params"]:
                    if not requires_grad:
                        p.grad = None
                    p.requires_grad_(requires_grad)
        self.frozen = set(agents)
        out = {id(g) for agent in self.frozen for g in self.agent_groups[agent]}
        self.optimizer.param_groups = [g for g in self.all_groups if id(g) not in out]

    def freeze(self, agent: str) -> None:
        """Stop updating ``agent``."""
        self.set_frozen(self.frozen | {agent})

    def unfreeze(self, agent: str) -> None:
        """Resume updating ``agent``."""
        self.set_frozen(self.frozen - {agent})


def per_agent_adam(
    groups: list[dict], loss_module: torch.nn.Module, agent_names: tuple[str, ...]
) -> tuple[torch.optim.Optimizer, ParamGroupFreezer]:
    """Adam over named per-agent parameter groups (``<agent>.<part>``), and their freezer.

    Raises
    ------
    RuntimeError
        If a trainable parameter of ``loss_module`` is in no group (a bug).
    """
    grouped = {id(p) for g in groups for p in g["params"]}
    missing = [
        n for n, p in loss_module.named_parameters() if p.requires_grad and id(p) not in grouped
    ]
    if missing:
        raise RuntimeError(f"parameters without an optimizer group: {missing[:5]}")
    for group in groups:
        group["initial_lr"] = group["lr"]
    # The fused kernel updates every parameter in one call (the per-parameter loop costs
    # several milliseconds per step on CPU); same algorithm, same hyper-parameters.
    optimizer = torch.optim.Adam(groups, eps=1e-5, fused=True)
    by_agent = {
        agent: [g for g in optimizer.param_groups if g["name"].split(".")[0] == agent]
        for agent in agent_names
    }
    return optimizer, ParamGroupFreezer(optimizer, by_agent)
