"""Stackelberg and opponent-shaping gradients for agents with differentiable losses.

Given each agent's loss ``L_i`` as a differentiable function of every agent's parameters,
and a Stackelberg sequence of agent groups (leaders first), these functions return the
update direction of each agent for the SPG family (Fiez et al.; Foerster et al.'s LOLA;
Letcher et al.'s SOS), computed with autograd: per-agent gradients come from
``torch.autograd.grad`` over each agent's own parameter list, mixed second derivatives from
double backward, and inverse-Hessian-vector products from a Nyström approximation.

Notation: ``xi_i = grad_i L_i`` (the simultaneous gradient), ``grad_f L_l`` the leader's loss
through the follower's parameters, ``H_ff = grad^2_ff L_f``. For a leader ``l`` and each agent
``f`` of a later group:

- ``spg``: ``l`` moves along ``xi_l - grad^2_lf L_f (H_ff + rho I)^-1 grad_f L_l``, the
  implicit-function-theorem gradient of ``L_l`` when ``f`` best-responds (regularised by
  ``rho``). The vector the inverse Hessian applies to is the *leader's* loss through the
  follower's parameters.
- ``lola``: with the follower's look-ahead step size ``alpha_f``, the shaping term
  ``OS_l = alpha_f grad^2_lf L_f grad_f L_l`` and (``additional_lola_term``) the look-ahead
  term ``HG_l = alpha_f grad^2_lf L_l grad_f L_f``; ``l`` moves along
  ``xi_l - HG_l - OS_l``, the first-order gradient of ``L_l(theta_l, theta_f - alpha_f
  grad_f L_f)``.
- ``sos``: as LOLA, with the shaping term scaled by one ``p`` for all agents:
  ``xi_0 = xi - HG``, ``p1 = 1`` if ``<-OS, xi_0> >= 0`` else
  ``min(1, -a |xi_0|^2 / <-OS, xi_0>)``, ``p2 = |xi|^2`` if ``|xi| < b`` else 1,
  ``p = min(p1, p2)``; update ``xi_0 - p OS``, with ``xi`` the raw simultaneous gradient.

Agents of the last group (pure followers) move along ``xi``. A leader accounts for every
agent of every later group directly; responses that pass through an intermediate group are
not chained (with the default two groups, verifier then provers, there are none).
The clipped variants (``pspg``, ``pola``, ``psos``) differ only in the losses passed in.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from nip.config.choices import SpgVariant

#: The variants' names (``trainer.variant``).
VARIANTS = tuple(v.value for v in SpgVariant)


@dataclass
class ShapingSettings:
    """How the SPG-family update is formed.

    Attributes
    ----------
    variant : str
        One of :data:`VARIANTS`.
    ihvp_rank : int
        Hessian rows sampled by the Nyström approximation (``>=`` the follower's parameter
        count: exact).
    ihvp_rho : float
        Regularisation ``rho`` of ``(H + rho I)^-1``.
    additional_lola_term : bool
        Include the look-ahead term ``HG`` in LOLA (SOS always does).
    sos_a, sos_b : float
        SOS's ``a`` (scaling) and ``b`` (threshold).
    ihvp_max_gain : float
        The most :func:`nystrom_ihvp` may amplify a vector beyond ``|g| / rho`` (see there).
    """

    variant: str = "spg"
    ihvp_rank: int = 5
    ihvp_rho: float = 0.1
    additional_lola_term: bool = True
    sos_a: float = 0.5
    sos_b: float = 0.1
    ihvp_max_gain: float = 1000.0


class IllConditionedHessianError(FloatingPointError):
    """``(H + rho I)`` is too close to singular for its inverse to mean anything.

    Attributes
    ----------
    advice : str
        What to change (one clause, for the run's error line).
    """

    advice = "raise trainer.ihvp_rho or trainer.ihvp_max_gain"


def flat_grad(output: Tensor, params: Sequence[Tensor], *, create_graph: bool = False) -> Tensor:
    """``d output / d params`` as one flat vector (zeros where ``output`` does not depend)."""
    grads = torch.autograd.grad(
        output, list(params), create_graph=create_graph, retain_graph=True, allow_unused=True
    )
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).reshape(-1)
            for g, p in zip(grads, params, strict=True)
        ]
    )


def nystrom_ihvp(
    hvp: Callable[[Tensor], Tensor],
    g: Tensor,
    rank: int,
    rho: float,
    generator: torch.Generator | None = None,
    jitter: float | None = None,
    max_gain: float = float("inf"),
) -> Tensor:
    """Approximate ``(H + rho I)^-1 g`` from ``rank`` Hessian rows (Nyström + Woodbury).

    ``rank`` random coordinates ``idx`` give the rows ``P = H[idx, :]`` (one Hessian-vector
    product each, with unit vectors; ``H`` is symmetric) and ``W = H[idx, idx]``. With the
    low-rank ``H ~ P^T W^-1 P``, the Woodbury identity gives
    ``(rho I + P^T W^-1 P)^-1 g = g / rho - P^T (W + P P^T / rho)^-1 P g / rho^2``: a
    ``rank x rank`` solve. Exact when the sampled rows span ``H`` (e.g. ``rank >= n``).

    Parameters
    ----------
    hvp : callable
        ``v -> H v`` for flat ``v``.
    g : Tensor
        Flat vector ``[n]``.
    rank : int
        Rows to sample (capped at ``n``).
    rho : float
        Regularisation; must be positive.
    generator : torch.Generator, optional
        Draws the coordinates (reproducible runs pass a seeded one).
    jitter : float, optional
        Added to the small system's diagonal, relative to its scale, so that a Hessian with
        zero rows still gives a solvable system (default: the dtype's machine epsilon
        times ``rank``, too small to change a well-posed answer).
    max_gain : float
        Refuse answers longer than ``max_gain * |g| / rho``. For a positive semi-definite
        ``H`` the answer is never longer than ``|g| / rho``; an indefinite ``H`` (a follower
        away from a local minimum) with an eigenvalue near ``-rho`` makes ``H + rho I``
        near-singular and the answer explode along that eigenvector, by a factor
        ``rho / |lambda + rho|``, however the system is solved.

    Raises
    ------
    IllConditionedHessianError
        The answer is longer than ``max_gain * |g| / rho``, or not finite.
    """
    n = g.numel()
    k = min(rank, n)
    idx = torch.randperm(n, generator=generator)[:k].to(g.device)
    # The unit vectors of the sampled coordinates only: an n x n identity would cost
    # hundreds of MB for an agent's policy (n is its parameter count).
    units = torch.zeros(k, n, dtype=g.dtype, device=g.device)
    units[torch.arange(k, device=g.device), idx] = 1
    rows = torch.stack([hvp(unit) for unit in units])  # [k, n]
    w = rows[:, idx]
    system = w + rows @ rows.T / rho
    if jitter is None:
        jitter = torch.finfo(g.dtype).eps * k
    scale = system.diagonal().abs().max().clamp(min=1.0)
    system = system + jitter * scale * torch.eye(k, dtype=g.dtype, device=g.device)
    z = torch.linalg.solve(system, rows @ g)
    answer = g / rho - rows.T @ z / rho**2
    bound = g.norm() / rho
    length = answer.norm()
    if not torch.isfinite(length) or length > max_gain * bound:
        raise IllConditionedHessianError(
            f"the follower's H + rho I is near-singular (rho = {rho:g}): its inverse "
            f"lengthened the gradient {(length / bound).item():.3g} times, more than the "
            f"{max_gain:g} allowed (at most 1 for a positive semi-definite Hessian)"
        )
    return answer


def shaped_updates(
    losses: Sequence[Tensor],
    params: Sequence[Sequence[Tensor]],
    groups: Sequence[Sequence[int]],
    settings: ShapingSettings,
    lookahead_lrs: Sequence[float] | None = None,
    generator: torch.Generator | None = None,
) -> list[Tensor]:
    """Each agent's update direction (flat, detached) under the SPG family.

    Parameters
    ----------
    losses : sequence of Tensor
        Agent ``i``'s scalar loss ``L_i``, differentiable in every agent's parameters.
    params : sequence of sequences of Tensor
        Agent ``i``'s parameters.
    groups : sequence of sequences of int
        The Stackelberg sequence: groups of agent indices, leaders first.
    settings : ShapingSettings
        Variant and its settings.
    lookahead_lrs : sequence of float, optional
        LOLA/SOS look-ahead step ``alpha_f`` of each agent (its learning rate).
    generator : torch.Generator, optional
        For the Nyström coordinates.

    Returns
    -------
    list of Tensor
        Flat update of each agent (what gradient descent should subtract, scaled by the lr).
    """
    return shaped_updates_and_gradients(losses, params, groups, settings, lookahead_lrs, generator)[
        0
    ]


def shaped_updates_and_gradients(
    losses: Sequence[Tensor],
    params: Sequence[Sequence[Tensor]],
    groups: Sequence[Sequence[int]],
    settings: ShapingSettings,
    lookahead_lrs: Sequence[float] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[list[Tensor], list[Tensor]]:
    """:func:`shaped_updates`, and each agent's plain gradient ``xi_i`` (flat, detached)
    that it computes on the way (so a caller comparing the two needs no second backward)."""
    if settings.variant not in VARIANTS:
        raise ValueError(f"unknown variant {settings.variant!r}; one of {', '.join(VARIANTS)}")
    num_agents = len(losses)
    stackelberg = settings.variant in (SpgVariant.spg, SpgVariant.pspg)
    sos = settings.variant in (SpgVariant.sos, SpgVariant.psos)
    # xi_i with its graph: mixed second derivatives differentiate it again.
    xi = [flat_grad(losses[i], params[i], create_graph=True) for i in range(num_agents)]
    shaping = [torch.zeros_like(x) for x in xi]  # SPG correction, or LOLA/SOS's OS
    lookahead = [torch.zeros_like(x) for x in xi]  # LOLA/SOS's HG

    def mixed(of: Tensor, leader: int, vector: Tensor) -> Tensor:
        """``grad_leader <of, vector>`` (``of`` a flat gradient with graph)."""
        return flat_grad(of @ vector.detach(), params[leader])

    position = {agent: level for level, group in enumerate(groups) for agent in group}
    for leader in range(num_agents):
        followers = [f for f in range(num_agents) if position[f] > position[leader]]
        for f in followers:
            leader_through_f = flat_grad(losses[leader], params[f], create_graph=not stackelberg)
            if stackelberg:
                v = nystrom_ihvp(
                    lambda vector, f=f: flat_grad(xi[f] @ vector, params[f]),
                    leader_through_f.detach(),
                    settings.ihvp_rank,
                    settings.ihvp_rho,
                    generator,
                    max_gain=settings.ihvp_max_gain,
                )
                shaping[leader] = shaping[leader] + mixed(xi[f], leader, v)
                continue
            alpha = lookahead_lrs[f] if lookahead_lrs is not None else 1.0
            shaping[leader] = shaping[leader] + alpha * mixed(xi[f], leader, leader_through_f)
            if sos or settings.additional_lola_term:
                lookahead[leader] = lookahead[leader] + alpha * mixed(
                    leader_through_f, leader, xi[f]
                )
    xi = [x.detach() for x in xi]
    if not sos:
        return [x - hg - os for x, hg, os in zip(xi, lookahead, shaping, strict=True)], xi
    reduced = [x - h for x, h in zip(xi, lookahead, strict=True)]
    raw, os, xi0 = (torch.cat(v) for v in (xi, shaping, reduced))
    p = sos_p(raw, xi0, os, settings.sos_a, settings.sos_b)
    update = xi0 - p * os
    return list(update.split([x.numel() for x in xi])), xi


def sos_p(xi: Tensor, xi0: Tensor, os: Tensor, a: float, b: float) -> Tensor:
    """SOS's scaling of the shaping term (Letcher et al. 2019, with ``chi = -OS``).

    Parameters
    ----------
    xi : Tensor
        The raw simultaneous gradient of all agents.
    xi0 : Tensor
        ``xi`` minus the look-ahead terms.
    os : Tensor
        The shaping terms.
    a, b : float
        Scaling and threshold.
    """
    den = -(os @ xi0)
    p1 = torch.ones((), dtype=xi.dtype) if den >= 0 else (-a * (xi0 @ xi0) / den).clamp(max=1)
    norm2 = xi @ xi
    p2 = norm2 if norm2 < b**2 else torch.ones((), dtype=xi.dtype)
    return torch.minimum(p1, p2)
