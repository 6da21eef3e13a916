"""The SPG-family gradients on small differentiable games where the answer is exact."""

import pytest
import torch

from nip.objectives.opponent_shaping import (
    IllConditionedHessianError,
    ShapingSettings,
    flat_grad,
    nystrom_ihvp,
    shaped_updates,
)


@pytest.fixture(autouse=True)
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _quadratic_hvp(matrix: torch.Tensor):
    """``v -> H v`` through autograd, for ``f(x) = x^T A x / 2`` with ``H = (A + A^T) / 2``."""
    x = torch.randn(matrix.shape[0], requires_grad=True)
    grad = flat_grad(0.5 * x @ matrix @ x, [x], create_graph=True)
    return lambda v: flat_grad(grad @ v, [x])


def test_nystrom_with_full_rank_is_the_exact_regularised_inverse():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=g)
    h = a @ a.T  # symmetric positive semi-definite
    vector = torch.randn(6, generator=g)
    rho = 0.3
    approx = nystrom_ihvp(_quadratic_hvp(h), vector, rank=6, rho=rho, generator=g, jitter=0.0)
    exact = torch.linalg.solve(h + rho * torch.eye(6), vector)
    assert torch.allclose(approx, exact, atol=1e-8)


def test_nystrom_is_exact_for_a_low_rank_hessian_with_as_many_rows():
    """A rank-2 Hessian is recovered from any 2 rows whose 2x2 block is invertible."""
    g = torch.Generator().manual_seed(1)
    factor = torch.randn(5, 2, generator=g)
    h = factor @ factor.T
    vector = torch.randn(5, generator=g)
    approx = nystrom_ihvp(_quadratic_hvp(h), vector, rank=2, rho=0.5, generator=g, jitter=0.0)
    exact = torch.linalg.solve(h + 0.5 * torch.eye(5), vector)
    assert torch.allclose(approx, exact, atol=1e-8)


def test_nystrom_with_fewer_rows_than_the_rank_is_an_approximation():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(8, 8, generator=g)
    h = a @ a.T
    vector = torch.randn(8, generator=g)
    approx = nystrom_ihvp(_quadratic_hvp(h), vector, rank=3, rho=0.1, generator=g)
    exact = torch.linalg.solve(h + 0.1 * torch.eye(8), vector)
    assert not torch.allclose(approx, exact, atol=1e-3)


def _quadratic_game(seed: int = 3):
    """Leader x (2 parameters), follower y (3): L_x = x^T A y + |x|^2 / 2 + c^T y,
    L_y = |y|^2 + y^T B x + d^T y (strictly convex in y: a unique best response)."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(2, 3, generator=g), torch.randn(3, 2, generator=g)
    c, d = torch.randn(3, generator=g), torch.randn(3, generator=g)

    def losses(x, y):
        return [x @ a @ y + 0.5 * x @ x + c @ y, y @ y + y @ b @ x + d @ y]

    def best_response(x):
        return -(b @ x + d) / 2  # grad_y L_y = 2y + Bx + d = 0

    return losses, best_response


def test_spg_equals_the_implicit_function_theorem_gradient():
    """With the follower at its best response and a small rho (exact IHVP), the leader's update
    is the total derivative of L_x(x, y*(x)); the follower's is its own gradient (zero)."""
    losses, best_response = _quadratic_game()
    x = torch.tensor([0.3, -0.7], requires_grad=True)
    y = best_response(x).detach().requires_grad_(True)
    settings = ShapingSettings(variant="spg", ihvp_rank=3, ihvp_rho=1e-5)
    update_x, update_y = shaped_updates(losses(x, y), [[x], [y]], [[0], [1]], settings)

    x_ = x.detach().requires_grad_(True)
    total = torch.autograd.grad(losses(x_, best_response(x_))[0], x_)[0]
    assert torch.allclose(update_x, total, atol=1e-5)  # the regularisation: O(rho)
    assert torch.allclose(update_y, torch.zeros(3), atol=1e-12)
    # And the correction is not zero: the plain gradient differs.
    plain = torch.autograd.grad(losses(x_, y.detach())[0], x_)[0]
    assert not torch.allclose(update_x, plain, atol=1e-3)


def test_spg_correction_matches_the_regularised_formula_away_from_equilibrium():
    """Anywhere: xi_x - B^T... explicitly, grad_x L_x - (d2 L_y/dx dy)(H_yy + rho I)^-1 grad_y L_x."""
    losses, _ = _quadratic_game()
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = torch.tensor([0.5, -1.0, 0.2], requires_grad=True)
    rho = 0.2
    settings = ShapingSettings(variant="pspg", ihvp_rank=3, ihvp_rho=rho)
    update_x, _ = shaped_updates(losses(x, y), [[x], [y]], [[0], [1]], settings)
    loss_x, loss_y = losses(x, y)
    grad_x = torch.autograd.grad(loss_x, x, retain_graph=True)[0]
    grad_y_of_leader = torch.autograd.grad(loss_x, y, retain_graph=True)[0]
    hessian_yy = torch.autograd.functional.hessian(lambda y_: losses(x.detach(), y_)[1], y)
    mixed = torch.autograd.functional.jacobian(
        lambda x_: torch.autograd.grad(losses(x_, y)[1], y, create_graph=True)[0], x
    )  # [3, 2]: d(grad_y L_y)/dx
    expected = grad_x - mixed.T @ torch.linalg.solve(
        hessian_yy + rho * torch.eye(3), grad_y_of_leader
    )
    assert torch.allclose(update_x, expected, atol=1e-8)


def _nonlinear_game():
    def losses(x, y):
        return [
            torch.sin(x[0] * y[0]) + x[1] * y[1] ** 2 + 0.3 * (x**2).sum(),
            torch.cos(x[0] + y[1]) * y[0] + (x[1] * y[0]) ** 2 + 0.5 * (y**2).sum(),
        ]

    return losses


@pytest.mark.parametrize("alpha", [1e-3, 2e-3])
def test_lola_is_the_first_order_gradient_of_the_look_ahead(alpha):
    """LOLA (with its look-ahead term) differs from the exact gradient of
    L_x(x, y - alpha grad_y L_y(x, y)) by O(alpha^2)."""
    losses = _nonlinear_game()
    x = torch.tensor([0.4, -0.3], requires_grad=True)
    y = torch.tensor([0.7, 0.2], requires_grad=True)
    settings = ShapingSettings(variant="lola", additional_lola_term=True)
    update_x, update_y = shaped_updates(losses(x, y), [[x], [y]], [[0], [1]], settings, [0, alpha])

    x_ = x.detach().requires_grad_(True)
    y_ = y.detach().requires_grad_(True)
    step = torch.autograd.grad(losses(x_, y_)[1], y_, create_graph=True)[0]
    look_ahead = torch.autograd.grad(losses(x_, y_ - alpha * step)[0], x_)[0]
    assert (update_x - look_ahead).abs().max() < 20 * alpha**2
    plain = torch.autograd.grad(losses(x_, y_)[0], x_)[0]
    assert (update_x - plain).abs().max() > 10 * alpha**2 * 20  # the shaping is first order
    # The follower (last group) follows its own gradient.
    assert torch.allclose(update_y, torch.autograd.grad(losses(x_, y_)[1], y_)[0])


def _bilinear(x, y):
    return [x * y, -x * y]


def test_sos_p_by_hand():
    """L_x = xy, L_y = -xy at (x, y) = (-1, 2), alpha = 0.5, a = 0.1, b = 0.1.

    xi = (y, -x) = (2, 1). With grad_y L_x = x and xi_y = -x:
    OS_x = alpha * d/dx [xi_y * x0] = alpha * (-x0) = 0.5 ; HG_x = alpha * d/dx [x * (-x0)]
    = alpha * (-x0) = 0.5. So xi0 = xi - HG = (1.5, 1), OS = (0.5, 0),
    <-OS, xi0> = -0.75 < 0: p1 = min(1, 0.1 * (2.25 + 1) / 0.75) = 0.43333;
    |xi|^2 = 5 >= b^2: p2 = 1; p = 0.43333 and the update is (1.5 - 0.21667, 1).
    """
    x = torch.tensor(-1.0, requires_grad=True)
    y = torch.tensor(2.0, requires_grad=True)
    settings = ShapingSettings(variant="sos", sos_a=0.1, sos_b=0.1)
    update_x, update_y = shaped_updates(_bilinear(x, y), [[x], [y]], [[0], [1]], settings, [0, 0.5])
    p = 0.1 * 3.25 / 0.75
    assert update_x.item() == pytest.approx(1.5 - p * 0.5)
    assert update_y.item() == pytest.approx(1.0)


def test_sos_uses_the_raw_simultaneous_gradient_for_p2():
    """At (x, y) = (-0.2, 0.1), alpha = 1, a = 1, b = 1: xi = (0.1, 0.2), |xi|^2 = 0.05 < b^2,
    so p2 = 0.05 (of the raw xi; the corrected direction would give another value).
    OS_x = HG_x = alpha * 0.2 = 0.2: xi0 = (-0.1, 0.2), <-OS, xi0> = 0.02 >= 0: p1 = 1.
    p = 0.05: update_x = -0.1 - 0.05 * 0.2 = -0.11."""
    x = torch.tensor(-0.2, requires_grad=True)
    y = torch.tensor(0.1, requires_grad=True)
    settings = ShapingSettings(variant="psos", sos_a=1.0, sos_b=1.0)
    update_x, update_y = shaped_updates(_bilinear(x, y), [[x], [y]], [[0], [1]], settings, [0, 1.0])
    assert update_x.item() == pytest.approx(-0.11)
    assert update_y.item() == pytest.approx(0.2)


def test_a_follower_parameter_without_curvature_gives_a_finite_update():
    """A follower parameter its loss does not touch has zero Hessian rows; the Nyström system
    is still solvable and the update finite."""
    x = torch.tensor([0.5], requires_grad=True)
    y = torch.tensor([1.0, 2.0], requires_grad=True)
    losses = [x[0] * y[0], y[0] ** 2 + x[0] * y[0]]  # y[1] unused by both
    settings = ShapingSettings(variant="spg", ihvp_rank=2, ihvp_rho=0.1)
    update_x, _ = shaped_updates(losses, [[x], [y]], [[0], [1]], settings)
    # grad_x L_x = y0 = 1; correction = d2L_y/dx dy0 * (2 + 0.1)^-1 * grad_y0 L_x = 1 * 0.5 / 2.1
    assert update_x.item() == pytest.approx(1.0 - 0.5 / 2.1)


def test_unknown_variant_is_refused():
    x = torch.tensor(1.0, requires_grad=True)
    with pytest.raises(ValueError, match="unknown variant 'nonsense'"):
        shaped_updates([x * x], [[x]], [[0]], ShapingSettings(variant="nonsense"))


# An asymmetric game where every term differs: L_x = x^2 y (leader), L_y = -x y + y^2
# (follower). By hand: xi = (2xy, 2y - x); the leader's loss through the follower is
# grad_y L_x = x^2; d(xi_y)/dx = -1; H_yy = 2; with the follower's look-ahead step alpha,
#   OS_x = alpha * d/dx [xi_y * x^2] = -alpha x^2     (x^2 held constant),
#   HG_x = alpha * d/dx [x^2 * xi_y] = 2 alpha x xi_y (xi_y held constant),
#   SPG correction = d/dx [xi_y * (H_yy + rho)^-1 x^2] = -x^2 / (2 + rho).
def _asymmetric(x, y):
    return [x**2 * y, -x * y + y**2]


def _updates(variant, x, y, alpha=0.0, **settings):
    x = torch.tensor(x, requires_grad=True)
    y = torch.tensor(y, requires_grad=True)
    shaping = ShapingSettings(variant=variant, **settings)
    ux, uy = shaped_updates(_asymmetric(x, y), [[x], [y]], [[0], [1]], shaping, [0.0, alpha])
    return ux.item(), uy.item()


@pytest.mark.parametrize("variant", ["spg", "pspg"])
def test_spg_on_the_asymmetric_game_by_hand(variant):
    """(1.5, -0.5), rho = 0.1: xi_x = -1.5, correction = -2.25 / 2.1, update_x = -1.5 + 2.25/2.1.
    At the follower's best response y = x / 2 this is d/dx L_x(x, x/2) = 3x^2/2 as rho -> 0."""
    ux, uy = _updates(variant, 1.5, -0.5, ihvp_rank=1, ihvp_rho=0.1)
    assert ux == pytest.approx(-1.5 + 2.25 / 2.1, rel=1e-12)
    assert uy == pytest.approx(-2.5, rel=1e-12)
    ux, _ = _updates(variant, 1.5, 0.75, ihvp_rank=1, ihvp_rho=1e-6)
    assert ux == pytest.approx(1.5 * 1.5**2, rel=1e-6)  # the regularisation: O(rho)


@pytest.mark.parametrize("variant", ["lola", "pola"])
def test_lola_on_the_asymmetric_game_by_hand(variant):
    """(1.5, -0.5), alpha = 0.3: xi = (-1.5, -2.5), OS_x = -0.675, HG_x = 0.9 * -2.5 = -2.25."""
    ux, uy = _updates(variant, 1.5, -0.5, alpha=0.3, additional_lola_term=True)
    assert ux == pytest.approx(-1.5 + 2.25 + 0.675, rel=1e-12)
    assert uy == pytest.approx(-2.5, rel=1e-12)
    ux, uy = _updates(variant, 1.5, -0.5, alpha=0.3, additional_lola_term=False)
    assert ux == pytest.approx(-1.5 + 0.675, rel=1e-12)  # the shaping term alone
    assert uy == pytest.approx(-2.5, rel=1e-12)


@pytest.mark.parametrize("variant", ["sos", "psos"])
def test_sos_p1_branch_on_the_asymmetric_game_by_hand(variant):
    """(1, -1), alpha = 0.25, a = 0.01, b = 0.1: xi = (-2, -3), OS_x = -0.25, HG_x = -1.5.
    xi0 = xi - HG = (-0.5, -3); <-OS, xi0> = -0.125 < 0: p1 = min(1, 0.01 * 9.25 / 0.125)
    = 0.74; |xi|^2 = 13 >= b^2: p2 = 1. p = 0.74; update = xi0 - p OS = (-0.5 + 0.185, -3).
    Swapping the terms (xi - OS - p HG) would give -2 + 0.25 + 0.74 * 1.5 = -0.64."""
    ux, uy = _updates(variant, 1.0, -1.0, alpha=0.25, sos_a=0.01, sos_b=0.1)
    assert ux == pytest.approx(-0.5 + 0.74 * 0.25, rel=1e-12)
    assert uy == pytest.approx(-3.0, rel=1e-12)


@pytest.mark.parametrize("variant", ["sos", "psos"])
def test_sos_p2_branch_takes_the_raw_gradient_on_the_asymmetric_game(variant):
    """(0.2, 0.15), alpha = 5, a = 0.5, b = 0.5: xi = (0.06, 0.1), |xi|^2 = 0.0136 < b^2.
    OS_x = -0.2, HG_x = 5 * 0.04 = 0.2: xi0 = (-0.14, 0.1), |xi0|^2 = 0.0296;
    <-OS, xi0> = -0.028 < 0: p1 = 0.5 * 0.0296 / 0.028 = 0.529. p2 = 0.0136 (the raw xi's;
    xi0's would be 0.0296). p = 0.0136; update_x = -0.14 + 0.0136 * 0.2 = -0.13728."""
    ux, uy = _updates(variant, 0.2, 0.15, alpha=5.0, sos_a=0.5, sos_b=0.5)
    assert ux == pytest.approx(-0.14 + 0.0136 * 0.2, rel=1e-12)
    assert uy == pytest.approx(0.1, rel=1e-12)


def test_sos_with_p_one_is_lola():
    """(1.5, -0.5), alpha = 0.3: <-OS, xi0> = 0.675 * 0.75 >= 0 and |xi| >= b: p = 1."""
    sos = _updates("sos", 1.5, -0.5, alpha=0.3, sos_a=0.5, sos_b=0.1)
    assert sos == pytest.approx(_updates("lola", 1.5, -0.5, alpha=0.3), rel=1e-12)
    assert sos[0] == pytest.approx(1.425, rel=1e-12)


def _diagonal_hvp(eigenvalues: torch.Tensor):
    x = torch.zeros(len(eigenvalues), requires_grad=True)
    grad = flat_grad(0.5 * (eigenvalues * x**2).sum(), [x], create_graph=True)
    return lambda v: flat_grad(grad @ v, [x])


def test_nystrom_with_an_indefinite_hessian_is_still_the_regularised_inverse():
    """An eigenvalue -rho/2: (H + rho I)^-1 doubles that component, and nothing refuses it."""
    rho = 0.1
    eigenvalues = torch.tensor([-0.05, 1.0, 2.0])
    g = torch.tensor([1.0, 1.0, 1.0])
    out = nystrom_ihvp(_diagonal_hvp(eigenvalues), g, rank=3, rho=rho, max_gain=1000.0)
    assert torch.allclose(out, g / (eigenvalues + rho), rtol=1e-9)


def test_nystrom_refuses_a_near_singular_regularised_hessian():
    """An eigenvalue within 1e-7 of -rho: the exact answer is 1e7 / rho along it, noise in
    practice; refused in one message instead of exploding silently."""
    rho = 0.1
    eigenvalues = torch.tensor([-rho + 1e-7, 1.0, 2.0])
    g = torch.tensor([1.0, 1.0, 1.0])
    with pytest.raises(IllConditionedHessianError, match=r"near-singular \(rho = 0.1\)"):
        nystrom_ihvp(_diagonal_hvp(eigenvalues), g, rank=3, rho=rho, max_gain=1000.0)
    # Through the SPG update too: a follower y with L_y = (-rho + 1e-7) y^2 / 2 + x y.
    x = torch.tensor(1.0, requires_grad=True)
    y = torch.tensor(0.5, requires_grad=True)
    losses = [x * y, 0.5 * (-rho + 1e-7) * y**2 + x * y]
    settings = ShapingSettings(variant="spg", ihvp_rank=1, ihvp_rho=rho)
    with pytest.raises(IllConditionedHessianError, match="lengthened the gradient"):
        shaped_updates(losses, [[x], [y]], [[0], [1]], settings)
