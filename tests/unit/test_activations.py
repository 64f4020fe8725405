"""Activations: Lipschitz ≤ 1 by autograd on dense grids, Pila's C³ junction, NaN-free double backward (float64)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from nflab.flows.layers.activations import (
    ACTIVATIONS,
    ELU,
    CLipSwish,
    CPila,
    LipSwish,
    Pila,
    ReLU,
    Sine,
    cpila_normaliser,
    make_activation,
)

pytestmark = pytest.mark.usefixtures("float64")  # tests/conftest.py


def _jacobian_columns(act: nn.Module, x: Tensor) -> Tensor:
    """d out_c / d x for every output channel c, by autograd: [points, channels] (x: [points] scalars)."""
    xs = x.view(-1, 1).clone().requires_grad_(True)
    out = act(xs)
    columns = [torch.autograd.grad(out[:, c].sum(), xs, retain_graph=True)[0].view(-1) for c in range(out.shape[1])]
    return torch.stack(columns, dim=1)


def _lipschitz_on_grid(act: nn.Module, x: Tensor) -> float:
    """max over the grid of the norm of the Jacobian column of x ↦ act(x) (one or two output channels)."""
    return float(torch.linalg.vector_norm(_jacobian_columns(act, x), dim=1).max())


def _with_beta(act: nn.Module, beta_raw: float) -> nn.Module:
    with torch.no_grad():
        act.beta_raw.fill_(beta_raw)
    return act


# ---- Lipschitz constants -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("beta_raw", [-3.0, 0.5, 4.0])
def test_lipswish_and_clipswish_are_1_lipschitz_and_tight(beta_raw: float) -> None:
    beta = math.log1p(math.exp(beta_raw))
    x = torch.linspace(-12.0, 12.0, 200_001) / beta  # the derivatives depend on βx only
    lip = _lipschitz_on_grid(_with_beta(LipSwish(), beta_raw), x)
    assert 0.999 <= lip <= 1.0
    clip = _lipschitz_on_grid(_with_beta(CLipSwish(), beta_raw), x)
    assert 0.9995 <= clip <= 1.0


@pytest.mark.parametrize("k", [1.0, 2.0, 5.0, 10.0])
@pytest.mark.parametrize("shift", [0.0, 0.1, 0.2, 0.5, 1.0])
def test_cpila_is_1_lipschitz_and_tight_for_any_k_and_shift(k: float, shift: float) -> None:
    reach = shift + 40.0 / k  # beyond it both slopes are constant up to e^{-40}
    x = torch.cat([torch.linspace(-reach, reach, 40_001), torch.tensor([0.0, -0.6, 0.6])])
    lip = _lipschitz_on_grid(CPila(k, shift), x)
    assert lip <= 1.0
    assert lip >= 1.0 - 5e-4  # the normaliser is not loose


def test_cpila_default_normaliser_is_the_papers() -> None:
    assert cpila_normaliser(5.0, 0.2) == pytest.approx(1.0588, abs=2e-3)
    assert CPila().normaliser == cpila_normaliser(5.0, 0.2)
    # sup √(Pila'(x−s)² + Pila'(−x−s)²) by brute force on a fine grid, independently of the search
    x = torch.linspace(-3.0, 3.0, 200_001)
    raw = float(torch.linalg.vector_norm(_jacobian_columns(CPila(), x), dim=1).max()) * CPila().normaliser
    assert raw == pytest.approx(1.0588, abs=1e-4)
    assert raw <= cpila_normaliser(5.0, 0.2) <= raw * (1 + 2e-4)


@pytest.mark.parametrize("act", [ELU(), ReLU(), Sine(), Pila()])
def test_simple_activations_are_1_lipschitz(act: nn.Module) -> None:
    assert _lipschitz_on_grid(act, torch.linspace(-6.0, 6.0, 100_001)) <= 1.0


# ---- Pila -----------------------------------------------------------------------------------------------------------


def _derivatives(fn: nn.Module, z: float, order: int) -> list[float]:
    """fn(z) and its first ``order`` derivatives by repeated autograd at one point."""
    x = torch.tensor([z], requires_grad=True)
    values = [fn(x)]
    for _ in range(order):
        values.append(torch.autograd.grad(values[-1].sum(), x, create_graph=True)[0])
    return [float(v.detach()) for v in values]


@pytest.mark.parametrize("k", [1.0, 5.0, 10.0])
def test_pila_is_c3_at_zero(k: float) -> None:
    act = Pila(k)
    right = _derivatives(act, 1e-10, 4)
    left = _derivatives(act, -1e-10, 4)
    at_zero = _derivatives(act, 0.0, 3)
    for order, expected in enumerate([0.0, 1.0, 0.0, 0.0]):
        assert right[order] == pytest.approx(expected, abs=1e-6)
        assert left[order] == pytest.approx(expected, abs=1e-6)
        assert at_zero[order] == pytest.approx(expected, abs=1e-12)
    assert abs(left[4]) > 1.0 and right[4] == 0.0  # the 4th derivative jumps: the test sees discontinuities


def test_pila_values_match_the_formula_and_the_papers_extremes() -> None:
    z = torch.linspace(-3.0, 2.0, 500_001)
    k = 5.0
    expected = torch.where(z > 0, z, (k * k / 2 * z**3 - k * z**2 + z) * torch.exp(k * z))
    torch.testing.assert_close(Pila(k)(z), expected, rtol=1e-12, atol=1e-15)
    values = Pila()(z)
    assert float(values.min()) == pytest.approx(-0.274, abs=1e-3)
    assert float(z[values.argmin()]) == pytest.approx(-0.454, abs=2e-3)
    slopes = _jacobian_columns(Pila(), z).view(-1)
    assert float(slopes.min()) == pytest.approx(-0.348, abs=1e-3)
    assert float(z[slopes.argmin()]) == pytest.approx(-0.8, abs=2e-3)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", ["pila", "cpila", "lipswish", "clipswish", "elu", "sin"])
def test_no_nan_or_inf_in_first_and_second_derivatives(name: str, dtype: torch.dtype) -> None:
    act = make_activation(name).to(dtype)
    grid = torch.linspace(-1e4, 1e4, 20_001, dtype=dtype)
    special = torch.tensor([-1e4, -1e3, -160.0, -20.0, -1e-30, 0.0, 1e-30, 20.0, 160.0, 1e3, 1e4], dtype=dtype)
    x = torch.cat([grid, special]).view(-1, 1).requires_grad_(True)
    out = act(x)
    (first,) = torch.autograd.grad(out.pow(2).sum() / 2 + out.sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), x)
    assert torch.isfinite(out).all() and torch.isfinite(first).all() and torch.isfinite(second).all()
    beta_grads = [p for p in act.parameters()]
    if beta_grads:
        (beta_grad,) = torch.autograd.grad(act(x).sum(), beta_grads)
        assert torch.isfinite(beta_grad).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", ["pila", "cpila"])
def test_pila_gradients_stay_finite_at_the_ends_of_the_float_range(name: str, dtype: torch.dtype) -> None:
    huge = torch.finfo(dtype).max / 4
    x = torch.tensor([-huge, -1e30, 1e30, huge], dtype=dtype).view(-1, 1).requires_grad_(True)
    out = make_activation(name).to(dtype)(x)
    (first,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), x)
    assert torch.isfinite(out).all() and torch.isfinite(first).all() and torch.isfinite(second).all()


# ---- derivative(), shapes, factory ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_derivative_matches_autograd(name: str) -> None:
    act = make_activation(name)
    x = torch.cat([torch.linspace(-4.0, 4.0, 4001), torch.tensor([-1e3, 1e3])])
    x = x[x != 0]  # ReLU's derivative at 0 is a convention
    expected = _jacobian_columns(act, x)
    got = act.derivative(x.view(-1, 1))
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_channel_doubling_concatenates_along_dim_1(name: str) -> None:
    act = make_activation(name)
    x = torch.randn(2, 3, 4, 5)
    out = act(x)
    factor = 2 if act.doubles_channels else 1
    assert out.shape == (2, 3 * factor, 4, 5)
    assert act.doubles_channels == (name in ("clipswish", "cpila"))
    if act.doubles_channels:  # second half is the first half's recipe applied to −x
        if name == "cpila":
            torch.testing.assert_close(out[:, 3:], Pila(5.0)(-x - 0.2) / act.normaliser)
        else:
            torch.testing.assert_close(out[:, 3:], LipSwish()(-x) / 1.004)


def test_make_activation_passes_parameters_and_rejects_bad_ones() -> None:
    act = make_activation("cpila", k=2.0, shift=0.5)
    assert isinstance(act, CPila) and (act.k, act.shift) == (2.0, 0.5)
    assert make_activation("pila", k=3).k == 3.0
    cases = [
        (lambda: make_activation("swish"), "lipswish, clipswish, pila, cpila, elu, relu, sin"),
        (lambda: make_activation("pila", shift=0.1), "shift"),
        (lambda: make_activation("relu", k=1.0), "k"),
        (lambda: CPila(k=0.0), "k must be a positive"),
        (lambda: CPila(shift=-0.1), "shift"),
        (lambda: Pila(k=float("inf")), "k"),
    ]
    for build, text in cases:
        with pytest.raises(ValueError, match=text) as info:
            build()
        assert "\n" not in str(info.value)


def test_lipswish_beta_is_learnable_and_softplus_of_half_at_init() -> None:
    act = LipSwish()
    assert float(act.beta.detach()) == pytest.approx(math.log1p(math.exp(0.5)))
    x = torch.linspace(-3, 3, 7)
    expected = x * torch.sigmoid(act.beta.detach() * x) / 1.1
    torch.testing.assert_close(act(x), expected)
    act(x).sum().backward()
    assert act.beta_raw.grad is not None and act.beta_raw.grad != 0


def test_pila_closed_form_gradients_equal_autograd_through_the_formula() -> None:
    """pila() backpropagates by Pila' and Pila' by Pila'': first, second and third derivatives must equal plain
    autograd through the formula (float64, both branches, the junction and the clamped far-negative range)."""
    from nflab.flows.layers.pila import pila, pila_derivative, pila_derivative_formula, pila_formula

    z = torch.cat([torch.linspace(-400.0, -50.0, 7), torch.linspace(-3.0, 2.0, 41), torch.zeros(1)])
    z = z.to(torch.float64).requires_grad_(True)
    for k in (1.0, 5.0, 10.0):
        fast, plain = pila(z, k), pila_formula(z, k)
        torch.testing.assert_close(fast, plain, rtol=0, atol=0)
        for order in range(1, 4):
            (fast,) = torch.autograd.grad(fast.sum(), z, create_graph=True)
            (plain,) = torch.autograd.grad(plain.sum(), z, create_graph=True)
            torch.testing.assert_close(fast, plain, rtol=1e-10, atol=1e-12, msg=f"k={k}, derivative {order}")
        torch.testing.assert_close(pila_derivative(z, k), pila_derivative_formula(z, k), rtol=0, atol=0)
    assert torch.autograd.gradgradcheck(
        lambda v: pila(v, 5.0), (torch.linspace(-2, 1, 13, dtype=torch.float64, requires_grad=True),)
    )


def test_pila_backward_runs_vmapped_for_batched_jacobians() -> None:
    """Batched Jacobians (``is_grads_batched``, vmap) go through Pila's closed-form backward, not a fallback."""
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    act = CPila()
    y = act(x)
    cotangents = torch.eye(6, dtype=torch.float64).unsqueeze(1).expand(6, 6, 6)  # one-hot output column, batched
    (rows,) = torch.autograd.grad(y, x, cotangents, create_graph=True, is_grads_batched=True)
    expected = torch.stack([torch.autograd.grad(y, x, e, retain_graph=True)[0] for e in cotangents])
    torch.testing.assert_close(rows, expected, rtol=0, atol=1e-15)
    assert rows.requires_grad  # differentiable again (the log-det gradient needs it)
