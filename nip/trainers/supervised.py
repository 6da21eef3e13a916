"""Supervised classification by each agent's body alone: solo training and pretraining.

One code path for both: :class:`SoloClassifiers` puts a solo head on every learning agent's
policy body and trains body and head together with a cross-entropy loss. The solo-agent
trainer (:mod:`nip.trainers.solo_agent`) runs it for its epochs with checkpoints, held-out
accuracy and a final test; RL trainers run it before RL with ``trainer.pretrain_agents``
(:func:`pretrain_policy_bodies`), cached by hyper-parameters.
"""

import hashlib
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nip.checkpointing import atomic_torch_save
from nip.stats import share_key
from nip.utils.seeding import derive_seed

log = logging.getLogger("nip")


def epoch_order(num_examples: int, seed: int, epoch: int) -> Tensor:
    """The order of the examples in an epoch: a pure function of the seed and the epoch.

    So a run resumed at an epoch boundary sees exactly the batches an uninterrupted one does.
    """
    generator = torch.Generator().manual_seed(derive_seed(seed, "solo_order", epoch))
    return torch.randperm(num_examples, generator=generator)


class SoloClassifiers(nn.Module):
    """Every learning agent's policy body with a solo head, and one Adam over them.

    The agents' losses are summed before one backward pass and one Adam step: their
    parameters are disjoint (separate bodies and heads), so each agent's parameters get
    exactly the gradient of its own loss, and Adam, being per-parameter, moves them exactly
    as one optimizer per agent would.

    Parameters
    ----------
    view : SupervisedView
        The scenario's supervised view of a dataset (the bodies, inputs and labels).
    agent_names : tuple of str
        All agents, in the protocol's order.
    learning : tuple of bool
        Per agent, whether it is trained (frozen and random agents are not).
    seed : int
        Seeds the heads' initialisation.
    lr : float or None
        Learning rate of the heads (and of the bodies, see ``body_lr_factors``); ``None``
        builds no optimizer (classifiers that are only evaluated).
    body_lr_factors : bool
        Scale the bodies' learning rates by the agents' body factors.
    """

    def __init__(
        self,
        view: Any,
        agent_names: tuple[str, ...],
        learning: tuple[bool, ...],
        *,
        seed: int,
        lr: float | None,
        body_lr_factors: bool = False,
    ):
        super().__init__()
        self.view = view
        self.agent_names = agent_names
        self.trained = tuple(
            name for name, learns in zip(agent_names, learning, strict=True) if learns
        )
        self.agent_index = {name: agent_names.index(name) for name in self.trained}
        self.heads = nn.ModuleDict({name: view.solo_head(name, seed) for name in self.trained})
        self.optimizer: torch.optim.Optimizer | None = None
        if lr is None:
            return
        groups = []
        for name in self.trained:
            groups += view.body_parameter_groups(name, lr, body_lr_factors)
            groups.append(
                {"params": list(self.heads[name].parameters()), "lr": lr, "name": f"{name}.head"}
            )
        groups = [g for g in groups if g["params"] and g["lr"] > 0]
        self.optimizer = torch.optim.Adam(groups, eps=1e-5)

    def logits(self, name: str, idx: Tensor, view: Any = None) -> Tensor:
        """``[b, 2]``: agent ``name``'s reject/accept logits for examples ``idx`` of ``view``
        (default: the training view)."""
        view = self.view if view is None else view
        return self.heads[name](view.representation(self.agent_index[name], idx))

    def train_epoch(
        self,
        order: Tensor,
        batch_size: int,
        after_step: Callable[[], None] | None = None,
    ) -> dict[str, dict[str, float]]:
        """One pass over ``order`` (indices into the view) in batches; a step per batch.

        Parameters
        ----------
        order : Tensor
            long ``[n]``: the examples of the epoch, in order.
        batch_size : int
            Examples per step (the last batch may be smaller).
        after_step : callable, optional
            Called after every step (the trainer polls for stop signals there).

        Returns
        -------
        dict
            Agent -> ``loss`` and ``accuracy`` averaged over the epoch's examples, each batch
            measured as it was trained on (before its step).

        Raises
        ------
        FloatingPointError
            When a loss is not finite (nothing is stepped on it).
        """
        order = order.to(self.view.device)
        loss_sum = torch.zeros(len(self.trained), dtype=torch.float64, device=self.view.device)
        correct = torch.zeros_like(loss_sum)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            y = self.view.labels(idx)
            losses, hits = [], []
            for name in self.trained:
                logits = self.logits(name, idx)
                losses.append(F.cross_entropy(logits, y))
                hits.append((logits.argmax(-1) == y).sum())
            losses = torch.stack(losses)
            total = losses.sum()
            if not torch.isfinite(total):
                raise FloatingPointError(f"loss {total.item():.4g}")
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            self.optimizer.step()
            loss_sum += losses.detach().double() * len(idx)
            correct += torch.stack(hits).double()
            if after_step is not None:
                after_step()
        n = max(len(order), 1)
        loss_mean, accuracy = (loss_sum / n).tolist(), (correct / n).tolist()
        return {
            name: {"loss": loss_mean[i], "accuracy": accuracy[i]}
            for i, name in enumerate(self.trained)
        }

    @torch.no_grad()
    def predict(self, view: Any, idx: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
        """Every trained agent's per-example loss and correctness on examples ``idx`` of
        ``view`` (a supervised view over the same agents, e.g. of the test split).

        Returns
        -------
        loss, correct : Tensor
            float ``[agents, n]`` (cross-entropy) and bool ``[agents, n]``, agents in the order
            of :attr:`trained`.
        """
        idx = idx.to(view.device)
        losses, correct = [], []
        for start in range(0, len(idx), batch_size):
            batch = idx[start : start + batch_size]
            y = view.labels(batch)
            batch_loss, batch_correct = [], []
            for name in self.trained:
                logits = self.logits(name, batch, view)
                batch_loss.append(F.cross_entropy(logits, y, reduction="none"))
                batch_correct.append(logits.argmax(-1) == y)
            losses.append(torch.stack(batch_loss))
            correct.append(torch.stack(batch_correct))
        if not losses:
            empty = torch.zeros(len(self.trained), 0, device=view.device)
            return empty, empty.bool()
        return torch.cat(losses, dim=1), torch.cat(correct, dim=1)


def classification_stats(
    classifiers: SoloClassifiers,
    view: Any,
    idx: Tensor,
    batch_size: int,
    prefix: str,
    strata: dict[str, Tensor] | None = None,
) -> dict[str, float]:
    """Each agent's loss and accuracy on examples ``idx`` of ``view`` (in evaluation mode).

    Keys: ``<agent>.<prefix>loss``, ``<agent>.<prefix>accuracy``, accuracy on each label
    (``<agent>.<prefix>accuracy_<label name>``, e.g. ``_isomorphic``) and, for each named
    stratum (e.g. ``wl_score``), on each of its values (``..._wl_score_2``); and the share of
    label 1 ``<prefix><label 1 name>_fraction`` and ``<prefix>num_examples``.
    """
    was_training = classifiers.training
    classifiers.eval()
    view.policy.eval()
    try:
        loss, correct = classifiers.predict(view, idx, batch_size)
    finally:
        classifiers.train(was_training)
        view.policy.train(was_training)
    y = view.labels(idx.to(view.device)).cpu()
    loss, correct = loss.double().cpu(), correct.double().cpu()
    stats: dict[str, float] = {
        f"{prefix}num_examples": float(len(idx)),
        share_key(view.label_names, prefix): y.double().mean().item() if len(idx) else math.nan,
    }
    negative, positive = view.label_names
    masks = {positive: y == 1, negative: y == 0}
    for key, values in (strata or {}).items():
        values = values[idx.cpu()]
        for value in torch.unique(values[values >= 0]).tolist():
            masks[f"{key}_{value}"] = values == value
    for i, name in enumerate(classifiers.trained):
        stats[f"{name}.{prefix}loss"] = loss[i].mean().item() if len(idx) else float("nan")
        stats[f"{name}.{prefix}accuracy"] = correct[i].mean().item() if len(idx) else float("nan")
        for label, mask in masks.items():
            if mask.any():
                stats[f"{name}.{prefix}accuracy_{label}"] = correct[i][mask].mean().item()
    return stats


def pretrain_policy_bodies(
    view: Any,
    agent_names: tuple[str, ...],
    learning: tuple[bool, ...],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    cache_key: dict,
    cache_dir: Path,
) -> dict[str, dict[str, float]]:
    """Train every learning agent's policy body (with a throw-away solo head) before RL.

    The same training as ``trainer=solo_agent`` (:class:`SoloClassifiers`), on the whole
    training split, bodies and heads at ``lr``. The whole body is trained (the original
    code's pretraining left bodies at their initialisation). Results are cached under
    ``cache_dir/pretrained`` by a hash of ``cache_key``, so repeated runs and seeds with
    identical settings reuse them.

    Returns
    -------
    dict
        Agent -> final epoch's ``loss`` and ``accuracy`` (empty if loaded from the cache).
    """
    policy = view.policy
    key = hashlib.sha256(json.dumps(cache_key, sort_keys=True, default=str).encode()).hexdigest()
    cache_file = Path(cache_dir) / "pretrained" / f"{key[:32]}.pt"
    if cache_file.is_file():
        try:
            state = torch.load(cache_file, map_location="cpu", weights_only=True)
            for name, body_state in state.items():
                policy.bodies[name].load_state_dict(body_state)
            log.info(f"pretrained bodies loaded from {cache_file}")
            return {}
        except Exception as e:  # a corrupt cache entry is recomputed
            log.warning(f"ignoring unreadable pretraining cache {cache_file}: {e}")

    classifiers = SoloClassifiers(
        view, agent_names, learning, seed=seed, lr=lr, body_lr_factors=False
    )
    results: dict[str, dict[str, float]] = {}
    for epoch in range(epochs):
        results = classifiers.train_epoch(epoch_order(len(view), seed, epoch), batch_size)
    for name, values in results.items():
        log.info(f"pretrained {name}: loss {values['loss']:.4f}, accuracy {values['accuracy']:.3f}")
    state = {name: policy.bodies[name].state_dict() for name in classifiers.trained}
    atomic_torch_save(state, cache_file)
    return results
