"""The SPG-family gradients on small differentiable games where the answer is exact."""

import pytest
import torch

from nip.objectives.opponent_shaping import (
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
