"""Fixed-point solvers: plain / Anderson / Broyden reach the solution of contractions, fail loudly otherwise, stop on
the absolute (not squared) step, and implicit differentiation through the resolvent is exact (gradcheck, unrolled)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from nflab.flows.registry import ConfigError
from nflab.flows.solvers import (
    ConvergenceError,
    SolverConfig,
    broyden,
    fixed_point,
    implicit_resolvent,
    resolvent,
)

DTYPE = torch.float64


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def contraction(dim: int = 4, lip: float = 0.9, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(W, c) of h(w) = tanh(w Wᵀ + c) with ‖W‖₂ = lip, so Lip(h) ≤ lip."""
    w = torch.randn(dim, dim, generator=generator(seed), dtype=DTYPE)
    return lip * w / torch.linalg.matrix_norm(w, 2), 0.3 * torch.randn(dim, generator=generator(seed + 1), dtype=DTYPE)


def tanh_map(weight: Tensor, bias: Tensor) -> Callable[[Tensor], Tensor]:
    return lambda w: torch.tanh(w @ weight.T + bias)


# --- forward solves -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["plain", "anderson", "broyden"])
def test_resolvent_solves_a_contraction(method: str) -> None:
    h = tanh_map(*contraction())
    b = torch.randn(16, 4, generator=generator(5), dtype=DTYPE)
    w, report = resolvent(h, b, SolverConfig(method=method, tol=1e-10, max_iter=2000))
    assert report.converged and report.method == method and report.residual <= 1e-10
    assert (w + h(w) - b).abs().max() < 1e-8
    assert not w.requires_grad


def test_anderson_and_broyden_need_clearly_fewer_iterations() -> None:
    c = 0.1 * torch.randn(4, generator=generator(2), dtype=DTYPE)
    h = lambda w: 0.9 * torch.tanh(w + c)  # noqa: E731  (Lip 0.9, slope ≈ 0.9 near the solution)
    b = 0.3 * torch.randn(32, 4, generator=generator(3), dtype=DTYPE)
    iterations = {}
    for method in ("plain", "anderson", "broyden"):
        w, report = resolvent(h, b, SolverConfig(method=method, tol=1e-10, max_iter=5000))
        assert (w + h(w) - b).abs().max() < 1e-8
        iterations[method] = report.iterations
    assert iterations["plain"] >= 3 * iterations["anderson"], iterations
    assert iterations["plain"] >= 3 * iterations["broyden"], iterations


def test_fixed_point_on_image_shaped_batches() -> None:
    b = torch.randn(3, 2, 4, 4, generator=generator(8), dtype=DTYPE)
    w, report = resolvent(lambda z: 0.5 * torch.sin(z.flip(-1)), b, SolverConfig(tol=1e-12))
    assert w.shape == b.shape and report.converged
    assert (w + 0.5 * torch.sin(w.flip(-1)) - b).abs().max() < 1e-10


def test_nonconverging_solves_raise_with_iterations_and_residual() -> None:
    rotation = 1.5 * torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=DTYPE)
    b = torch.randn(4, 2, generator=generator(9), dtype=DTYPE)
    with pytest.raises(ConvergenceError) as info:  # expanding: the plain iteration diverges
        resolvent(lambda w: w @ rotation.T, b, SolverConfig(method="plain", tol=1e-6, max_iter=500))
    err = info.value
    assert isinstance(err, RuntimeError) and err.method == "plain" and err.residual > err.tol == 1e-6
    assert "fixed-point solve did not converge" in str(err) and "(plain)" in str(err)
    assert f"after {err.iterations} iterations" in str(err) and f"residual {err.residual:.1e}" in str(err)

    def shift(x: Tensor) -> Tensor:  # T(x) − x = 1 + ½ sin x ≥ ½: no fixed point at all
        return x + 1.0 + 0.5 * torch.sin(x)

    with pytest.raises(ConvergenceError, match=r"after 300 iterations \(anderson\)") as info:
        fixed_point(shift, b, tol=1e-6, max_iter=300, method="anderson")
    assert info.value.iterations == 300 and info.value.residual > 0.1
    with pytest.raises(ConvergenceError, match=r"\(broyden\)") as info:
        broyden(lambda x: 1.0 + 0.5 * torch.sin(x), b, tol=1e-6, max_iter=300)
    assert info.value.iterations == 300


@pytest.mark.parametrize("method", ["plain", "anderson", "broyden"])
def test_too_small_budget_raises_or_reports(method: str) -> None:
    h = tanh_map(*contraction())
    b = torch.randn(4, 4, generator=generator(4), dtype=DTYPE)
    with pytest.raises(ConvergenceError, match="after 3 iterations"):
        resolvent(h, b, SolverConfig(method=method, tol=1e-12, max_iter=3))
    _, report = resolvent(h, b, SolverConfig(method=method, tol=1e-12, max_iter=3), raise_on_failure=False)
    assert not report.converged and report.iterations == 3 and report.residual > 1e-12


def test_stopping_rule_is_on_the_absolute_step_not_its_square() -> None:
    x0 = torch.zeros(2, 3, dtype=DTYPE)
    for method in ("plain", "anderson", "broyden"):
        # T moves x by 1e-4: |Δ| = 1e-4 > tol = 1e-6 although Δ² = 1e-8 < tol would pass a squared test
        _, report = fixed_point(lambda x: x + 1e-4, x0, tol=1e-6, max_iter=1, method=method, raise_on_failure=False)
        assert not report.converged and report.residual == pytest.approx(1e-4, rel=1e-9)
        _, report = fixed_point(lambda x: x + 1e-4, x0, tol=2e-4, max_iter=1, method=method, raise_on_failure=False)
        assert report.converged
    with pytest.raises(ConvergenceError, match=r"residual 1\.0e-04 > tol 1e-06 after 50 iterations"):
        fixed_point(lambda x: x + 1e-4, x0, tol=1e-6, max_iter=50, method="plain")
    x, report = fixed_point(lambda x: torch.full_like(x, 0.25), x0, tol=1e-6, max_iter=5, method="plain")
    assert report.converged and report.iterations == 2 and torch.equal(x, torch.full_like(x0, 0.25))
    # relative-absolute: |Δ| ≤ tol·(1 + |x0|) element-wise, so large x0 scales the tolerance
    big = torch.full((1, 1), 1e4, dtype=DTYPE)
    _, report = fixed_point(lambda x: x * 0 + 1e4 + 5e-3, big, tol=1e-6, max_iter=3, method="plain")
    assert report.converged and report.iterations == 1 and report.residual == pytest.approx(5e-3 / (1 + 1e4))


def test_tolerance_below_dtype_resolution_is_floored() -> None:
    weight, bias = contraction(dim=4, lip=0.9, seed=20)
    b = 1e-3 * torch.randn(64, 4, generator=generator(21), dtype=DTYPE)
    for method in ("plain", "anderson", "broyden"):
        w, report = resolvent(tanh_map(weight, bias), b, SolverConfig(method=method, tol=1e-12))
        assert report.tol == 1e-12  # float64 resolves it: unchanged
        w32, report32 = resolvent(
            tanh_map(weight.float(), bias.float()), b.float(), SolverConfig(method=method, tol=1e-9, max_iter=100)
        )
        floor = 4 * torch.finfo(torch.float32).eps
        assert report32.converged and report32.tol == pytest.approx(floor) and report32.residual <= floor
        assert (w32.double() - w).abs().max() < 1e-5


def test_anderson_memory_d_solves_a_linear_map_like_gmres() -> None:
    """On x = A x + b in D dimensions, Anderson with memory ≥ D is GMRES in disguise: exact after about D + 1
    evaluations, where memory 1 (the secant step) and plain iteration take many more; memory 1 matches the
    reference's secant formula x ← G − μ(G − G_prev), μ = ⟨ΔF, F⟩ / (‖ΔF‖² + ε)."""
    dim = 6
    a = torch.randn(dim, dim, generator=generator(8), dtype=DTYPE)
    a = 0.95 * a / torch.linalg.matrix_norm(a, 2)
    b = torch.randn(8, dim, generator=generator(9), dtype=DTYPE)
    T = lambda x: x @ a.T + b  # noqa: E731
    exact = torch.linalg.solve(torch.eye(dim, dtype=DTYPE) - a, b.T).T
    its = {}
    for memory in (1, 3, dim, 50):
        x, report = fixed_point(T, b, tol=1e-11, max_iter=5000, method="anderson", memory=memory)
        torch.testing.assert_close(x, exact, atol=1e-9, rtol=0)
        its[memory] = report.iterations
    _, plain = fixed_point(T, b, tol=1e-11, max_iter=5000, method="plain")
    assert its[dim] <= dim + 4 and its[50] == its[dim], its  # memory is capped at the dimension
    assert plain.iterations >= 3 * its[dim] and its[1] >= 2 * its[dim], (plain.iterations, its)

    # memory 1 by hand: the secant step of Monotone Flows' solver, three iterations
    x, g_prev, f_prev = b.clone(), None, None
    for _ in range(3):
        g = T(x)
        f = g - x
        if g_prev is None:
            x_next = g
        else:
            d2 = f - f_prev
            mu = (d2 * f).sum(1, keepdim=True) / ((d2 * d2).sum(1, keepdim=True) + 1e-8 * (2.0**-52 / 2.0**-23) ** 2)
            x_next = g - mu * (g - g_prev)
        g_prev, f_prev, x = g, f, x_next
    # the solver's best iterate after 4 evaluations is the 4th G (residuals fall monotonically here)
    solver_x, _ = fixed_point(T, b, tol=1e-300, max_iter=4, method="anderson", memory=1, raise_on_failure=False)
    torch.testing.assert_close(solver_x, T(x), atol=1e-12, rtol=0)


def test_solver_config_validation() -> None:
    assert SolverConfig().validate().method == "anderson"
    for overrides, path in [
        ({"method": "newton"}, "solver.method: 'newton' is not one of: anderson, plain, broyden"),
        ({"tol": 0.0}, "solver.tol"),
        ({"max_iter": 0}, "solver.max_iter"),
        ({"backward_tol": -1.0}, "solver.backward_tol"),
        ({"backward_max_iter": 1.5}, "solver.backward_max_iter"),
        ({"anderson_memory": 0}, "solver.anderson_memory: 0 is not an integer ≥ 1"),
        ({"backward_direct": "yes"}, "solver.backward_direct: 'yes' is not true or false"),
    ]:
        with pytest.raises(ConfigError, match=path):
            SolverConfig().updated(**overrides)
    assert SolverConfig().updated(tol=None, max_iter=7).max_iter == 7
    with pytest.raises(ValueError, match="method"):
        fixed_point(lambda x: x, torch.zeros(1, 1), tol=1e-6, max_iter=5, method="newton")


# --- implicit differentiation ---------------------------------------------------------------------------------------


def implicit_solution(b: Tensor, weight: Tensor, bias: Tensor, config: SolverConfig) -> Tensor:
    """w* = (I + h)^{-1}(b) for h = tanh(w Wᵀ + c), differentiable in (b, W, c) by implicit differentiation."""
    return implicit_resolvent(tanh_map(weight, bias), tanh_map(weight.detach(), bias.detach()), b, config)[0]


@pytest.mark.parametrize("method", ["anderson", "plain", "broyden"])
def test_implicit_gradient_passes_gradcheck(method: str) -> None:
    weight, bias = contraction(dim=3, lip=0.8, seed=10)
    b = torch.randn(4, 3, generator=generator(12), dtype=DTYPE)
    inputs = (b.requires_grad_(True), weight.requires_grad_(True), bias.requires_grad_(True))
    config = SolverConfig(method=method, tol=1e-12, max_iter=1000, backward_tol=1e-12, backward_max_iter=1000)
    assert torch.autograd.gradcheck(lambda *args: implicit_solution(*args, config), inputs, atol=1e-8, rtol=1e-6)


def test_implicit_gradient_equals_backprop_through_unrolled_iterations() -> None:
    weight, bias = contraction(dim=3, lip=0.8, seed=13)
    b = torch.randn(5, 3, generator=generator(14), dtype=DTYPE).requires_grad_(True)
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    upstream = torch.randn(5, 3, generator=generator(15), dtype=DTYPE)
    w = b
    for _ in range(300):
        w = b - torch.tanh(w @ weight.T + bias)
    unrolled = torch.autograd.grad((w * upstream).sum(), (b, weight, bias))
    config = SolverConfig(tol=1e-12, backward_tol=1e-12)
    implicit = torch.autograd.grad((implicit_solution(b, weight, bias, config) * upstream).sum(), (b, weight, bias))
    for a, c in zip(unrolled, implicit):
        assert torch.allclose(a, c, atol=1e-10, rtol=0)
        assert a.abs().max() > 1e-2


def test_implicit_backward_failure_raises() -> None:
    weight, bias = contraction(dim=3, lip=0.8, seed=16)
    b = torch.randn(2, 3, generator=generator(17), dtype=DTYPE).requires_grad_(True)
    config = SolverConfig(tol=1e-12, backward_tol=1e-14, backward_max_iter=2)
    w = implicit_solution(b, weight, bias, config)
    with pytest.raises(ConvergenceError, match="after 2 iterations"):
        w.sum().backward()


def test_implicit_resolvent_without_grad_returns_the_solution() -> None:
    weight, bias = contraction(dim=3, lip=0.8, seed=18)
    b = torch.randn(2, 3, generator=generator(19), dtype=DTYPE)
    h = tanh_map(weight, bias)
    w, report = implicit_resolvent(h, h, b, SolverConfig(tol=1e-12))
    assert report.converged and not w.requires_grad
    assert (w + h(w) - b).abs().max() < 1e-11
