"""E4's computation (``nflab.flows.analysis.estimator_bias_variance``) against exact values, float64.

Linear branches g(x) = A x make everything closed-form: E[T_n] = Σ_{k≤n} c_k tr(A^k), the exact log-det, and the
Hutchinson std of a Gaussian probe, sd(vᵀBv) = √2·‖(B + Bᵀ)/2‖_F with B = Σ_{k≤n} c_k A^k. A small trained-like
Residual Flow is checked against brute-force Jacobians of its branches.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from nflab.flows import Compose, Flow, build
from nflab.flows.analysis import estimator_bias_variance
from nflab.flows.blocks import ImplicitBlock, MonotoneBlock, ResidualBlock
from nflab.flows.jacobian import brute_force_logdet
from nflab.flows.logdet import LogDetConfig
from nflab.flows.logdet.coefficients import monotone_coefficient, residual_coefficient
from nflab.flows.solvers import SolverConfig

pytestmark = pytest.mark.usefixtures("float64")  # tests/conftest.py


ROULETTE = LogDetConfig(kind="roulette", n_exact_terms=2, dist="geometric", geom_p=0.5)
SOLVER = SolverConfig(tol=1e-12, backward_tol=1e-12, max_iter=5000)
TERMS = [1, 2, 3, 5, 8, 12, 16]


class Linear(nn.Module):
    def __init__(self, matrix: Tensor) -> None:
        super().__init__()
        self.register_buffer("matrix", matrix)

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.matrix.T


def _matrix(norm: float, seed: int, d: int = 2) -> Tensor:
    """A non-symmetric matrix with spectral norm ``norm``."""
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(seed))
    return norm * a / torch.linalg.matrix_norm(a, ord=2)


def _series_sum(a: Tensor, n: int, coefficient) -> Tensor:
    """Σ_{k≤n} c_k A^k."""
    total, power = torch.zeros_like(a), torch.eye(a.shape[0])
    for k in range(1, n + 1):
        power = power @ a
        total = total + coefficient(k) * power
    return total


def _logdet(m: Tensor) -> float:
    return float(torch.linalg.slogdet(m).logabsdet)


def _points(n: int = 32, d: int = 2, seed: int = 0) -> Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _within(mc: list[float], expected: list[float], se: list[float], k: float = 4.0) -> bool:
    return all(abs(m - e) <= k * s + 1e-12 for m, e, s in zip(mc, expected, se))


def test_residual_linear_branch_matches_closed_forms() -> None:
    a = _matrix(0.8, seed=1)
    flow = Flow(Compose(ResidualBlock(Linear(a), logdet=ROULETTE, solver=SOLVER)), (2,))
    out = estimator_bias_variance(flow, _points(), TERMS, 400, torch.Generator().manual_seed(0))
    eye = torch.eye(2)
    exact = _logdet(eye + a)
    assert out["exact_logdet_mean"] == pytest.approx(exact, abs=1e-12)
    assert out["terms"] == TERMS and out["blocks"] == 1 and out["series"] == ["residual"]
    trunc, roul = out["truncated"], out["roulette"]
    expected = [float(torch.trace(_series_sum(a, n, residual_coefficient))) - exact for n in TERMS]
    assert trunc["expected_bias"] == pytest.approx(expected, abs=1e-12)
    assert trunc["expected_abs_bias"] == pytest.approx([abs(e) for e in expected], abs=1e-12)
    assert _within(trunc["bias"], expected, trunc["bias_se"])  # Monte Carlo agrees with the exact truncation error
    assert abs(expected[-1]) < 5e-3 * abs(expected[0])  # and the bias shrinks with n
    for n, sd in zip(TERMS, trunc["std"]):  # Hutchinson std of vᵀBv, Gaussian v: √2‖sym(B)‖_F
        b = _series_sum(a, n, residual_coefficient)
        assert sd == pytest.approx(math.sqrt(2) * float(torch.linalg.norm((b + b.T) / 2)), rel=0.1)
    assert _within(roul["bias"], [0.0] * len(TERMS), roul["bias_se"])  # unbiased at every n
    assert roul["std"][-1] == pytest.approx(trunc["std"][-1], rel=0.02)  # both reach the probe noise floor
    assert roul["mean_terms"][0] == pytest.approx(1 + 2.0, rel=0.05)  # E[N] = 1/p = 2 plus n = 1 exact terms


def test_roulette_std_falls_with_the_exact_terms() -> None:
    a = _matrix(0.95, seed=1)  # slowly decaying series: the roulette's share of the noise is large
    flow = Flow(Compose(ResidualBlock(Linear(a), logdet=ROULETTE, solver=SOLVER)), (2,))
    roul = estimator_bias_variance(flow, _points(), TERMS, 400, torch.Generator().manual_seed(0))["roulette"]
    assert _within(roul["bias"], [0.0] * len(TERMS), roul["bias_se"])
    assert roul["std"][0] > 1.5 * roul["std"][-1]
    assert all(later <= 1.02 * earlier for earlier, later in zip(roul["std"], roul["std"][1:]))


def test_monotone_series_is_evaluated_at_the_block_solution() -> None:
    a = _matrix(0.7, seed=2)
    flow = Flow(Compose(MonotoneBlock(Linear(a), logdet=ROULETTE, solver=SOLVER)), (2,))
    out = estimator_bias_variance(flow, _points(seed=1), TERMS, 200, torch.Generator().manual_seed(1))
    eye = torch.eye(2)
    exact = _logdet(eye - a) - _logdet(eye + a)
    assert out["series"] == ["monotone"]
    assert out["exact_logdet_mean"] == pytest.approx(exact, abs=1e-10)
    expected = [float(torch.trace(_series_sum(a, n, monotone_coefficient))) - exact for n in TERMS]
    trunc = out["truncated"]
    assert trunc["expected_bias"] == pytest.approx(expected, abs=1e-10)
    assert trunc["expected_bias"][0] == pytest.approx(trunc["expected_bias"][1], abs=1e-12)  # c_2 = 0
    assert _within(trunc["bias"], expected, trunc["bias_se"])
    assert _within(out["roulette"]["bias"], [0.0] * len(TERMS), out["roulette"]["bias_se"])


def test_implicit_block_subtracts_its_second_series() -> None:
    a, b = _matrix(0.6, seed=3), _matrix(0.5, seed=4)
    block = ImplicitBlock(Linear(a), Linear(b), logdet=ROULETTE, solver=SOLVER)
    out = estimator_bias_variance(Flow(Compose(block), (2,)), _points(seed=2), [1, 4], 50)
    eye = torch.eye(2)
    exact = _logdet(eye + a) - _logdet(eye + b)
    assert out["exact_logdet_mean"] == pytest.approx(exact, abs=1e-10)
    expected = [
        float(torch.trace(_series_sum(a, n, residual_coefficient) - _series_sum(b, n, residual_coefficient))) - exact
        for n in (1, 4)
    ]
    assert out["truncated"]["expected_bias"] == pytest.approx(expected, abs=1e-10)


def _tanh_branch(seed: int, lipschitz: float = 0.9, hidden: int = 8) -> nn.Sequential:
    """g(x) = R·W₁ᵀ tanh(W₁x + b) with orthonormal W₁ columns scaled to √L and a rotation R: Lip(g) ≤ L, and
    ‖J_g‖ = L where tanh′ = 1 (a branch that uses its whole Lipschitz budget, non-symmetric Jacobian)."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(hidden, 2, generator=gen))
    angle = float(torch.rand((), generator=gen)) * math.pi
    rotation = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    first, last = nn.Linear(2, hidden), nn.Linear(hidden, 2)
    with torch.no_grad():
        first.weight.copy_(math.sqrt(lipschitz) * q)
        first.bias.copy_(0.3 * torch.randn(hidden, generator=gen))
        last.weight.copy_(math.sqrt(lipschitz) * rotation @ q.T)
        last.bias.zero_()
    return nn.Sequential(first, nn.Tanh(), last)


def _stretched_resflow() -> Flow:
    """A nonlinear 2-block residual flow with branches near their Lipschitz budget (like a trained model)."""
    blocks = [ResidualBlock(_tanh_branch(seed), logdet=ROULETTE, solver=SOLVER) for seed in (0, 1)]
    return Flow(Compose(*blocks), (2,))


def test_nonlinear_flow_matches_brute_force_jacobians() -> None:
    flow = _stretched_resflow()
    x = _points(24, seed=5)
    out = estimator_bias_variance(flow, x, TERMS, 100, torch.Generator().manual_seed(2))
    # brute force: each block's Jacobian at its own input by autograd, the series from matrix powers
    expected = torch.zeros(len(TERMS))
    h = x
    for block in flow.transform.transforms:
        jac = torch.func.vmap(torch.func.jacrev(lambda v, g=block.g: g(v.unsqueeze(0)).squeeze(0)))(h)
        exact = torch.linalg.slogdet(torch.eye(2) + jac).logabsdet
        for i, n in enumerate(TERMS):
            series = torch.stack([torch.trace(s) for s in _batched_series(jac, n)])
            expected[i] += (series - exact).mean()
        with torch.no_grad():
            h = block(h)[0]
    assert out["truncated"]["expected_bias"] == pytest.approx(expected.tolist(), abs=1e-10)
    assert abs(out["truncated"]["expected_bias"][0]) > 1e-2  # the branches are far from the identity
    assert out["truncated"]["expected_abs_bias"][-1] < 1e-2 * out["truncated"]["expected_abs_bias"][0]
    assert _within(out["truncated"]["bias"], expected.tolist(), out["truncated"]["bias_se"])
    roul = out["roulette"]
    assert _within(roul["bias"], [0.0] * len(TERMS), roul["bias_se"])
    assert roul["std"][0] > roul["std"][-1]
    exact_total = brute_force_logdet(lambda v: flow(v)[0], x).mean()
    assert out["exact_logdet_mean"] == pytest.approx(float(exact_total), abs=1e-10)


def _batched_series(jac: Tensor, n: int) -> Tensor:
    total, power = torch.zeros_like(jac), torch.eye(jac.shape[-1]).expand_as(jac)
    for k in range(1, n + 1):
        power = power @ jac
        total = total + residual_coefficient(k) * power
    return total


def test_draws_are_reproducible_with_a_generator() -> None:
    flow = _stretched_resflow()
    x = _points(8, seed=6)
    first = estimator_bias_variance(flow, x, [1, 3], 10, torch.Generator().manual_seed(9))
    second = estimator_bias_variance(flow, x, [3, 1, 3], 10, torch.Generator().manual_seed(9))
    assert first == second  # terms are sorted and deduplicated


def test_bad_inputs_are_one_line_errors() -> None:
    flow = _stretched_resflow()
    x = _points(4)
    with pytest.raises(ValueError, match=r"^terms must be an integer >= 1, got 0$"):
        estimator_bias_variance(flow, x, [0, 1], 10)
    with pytest.raises(ValueError, match=r"^terms must list at least one"):
        estimator_bias_variance(flow, x, [], 10)
    with pytest.raises(ValueError, match=r"^repeats must be an integer >= 1, got 0$"):
        estimator_bias_variance(flow, x, [1], 0)
    with pytest.raises(ValueError, match=r"^estimator_bias_variance needs power-series log-det blocks \(families "):
        estimator_bias_variance(build("realnvp", (2,), preset="small"), x, [1], 10)
