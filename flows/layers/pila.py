"""Pila_k (Ahn et al., 2022) and its first two derivatives, with an autograd rule that uses them.

Pila_k(z) = z for z > 0 and (k²/2·z³ − k z² + z)·e^{kz} for z ≤ 0 (a C³ junction at 0);
Pila'(z) = (k³/2·z³ + k²/2·z² − k z + 1)·e^{kz}, Pila''(z) = (k⁴/2·z³ + 2k³·z²)·e^{kz} for z ≤ 0 (1 and 0 above).
Autograd through the dozen elementwise operations of the formula records them all, and a log-det gradient
(``create_graph``) differentiates that record once more. :func:`pila` instead backpropagates by one product with
Pila'(z), and Pila' by one product with Pila'' — the same numbers at a fraction of the graph.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

PILA_EXPONENT_FLOOR = -800.0
"""k·z is clamped to [−800, 0] inside the z ≤ 0 branch: e^{−800} is 0 in float64, so the value is unchanged,
while neither branch of the ``where`` can make inf (and so no inf·0 = NaN gradient) for any finite input."""


def _negative_part(z: Tensor, k: float) -> Tensor:
    """z clamped into the z ≤ 0 branch's safe range [−800/k, 0]."""
    return torch.clamp(z, min=PILA_EXPONENT_FLOOR / k, max=0.0)


def pila_formula(z: Tensor, k: float) -> Tensor:
    """Pila_k(z) by its formula (plain autograd)."""
    zn = _negative_part(z, k)
    negative = ((0.5 * k * k * zn - k) * zn + 1.0) * zn * torch.exp(k * zn)
    return torch.where(z > 0, z, negative)


def pila_derivative_formula(z: Tensor, k: float) -> Tensor:
    """Pila_k'(z) by its formula (plain autograd)."""
    zn = _negative_part(z, k)
    negative = (((0.5 * k**3 * zn + 0.5 * k * k) * zn - k) * zn + 1.0) * torch.exp(k * zn)
    return torch.where(z > 0, torch.ones_like(z), negative)


def _pila_values(z: Tensor, k: float) -> Tensor:
    """Pila_k(z) without a graph: the formula with in-place steps, and relu(z) for the z > 0 branch (where the
    cubic factor zn = 0 makes the other term vanish) — the same numbers as :func:`pila_formula`, fewer kernels."""
    zn = _negative_part(z, k)
    out = zn * (0.5 * k * k)
    out.sub_(k).mul_(zn).add_(1.0).mul_(zn)
    out.mul_(torch.exp(zn * k))
    return out.add_(torch.relu(z))


def _pila_derivative_values(z: Tensor, k: float) -> Tensor:
    """Pila_k'(z) without a graph: the polynomial is 1 and e^{k·zn} is 1 where z > 0 (zn = 0), so no ``where``."""
    zn = _negative_part(z, k)
    out = zn * (0.5 * k**3)
    out.add_(0.5 * k * k).mul_(zn).sub_(k).mul_(zn).add_(1.0)
    return out.mul_(torch.exp(zn * k))


def pila_second_derivative(z: Tensor, k: float) -> Tensor:
    """Pila_k''(z) = (k⁴/2·z³ + 2k³·z²)·e^{kz} for z ≤ 0, 0 for z > 0."""
    zn = _negative_part(z, k)
    return (0.5 * k**4 * zn + 2.0 * k**3) * zn * zn * torch.exp(k * zn)  # zn = 0 for z > 0 gives 0


class _ClosedFormElementwise(torch.autograd.Function):
    """y = value(z, k), backpropagated by one product with slope(z, k) (differentiable in turn, for create_graph).

    One rule serves Pila (slope Pila′) and Pila′ (slope Pila″)."""

    generate_vmap_rule = True  # elementwise: works under vmap / is_grads_batched (batched Jacobians)

    @staticmethod
    def forward(z: Tensor, k: float, value: Callable[[Tensor, float], Tensor], slope: Callable) -> Tensor:
        return value(z, k)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        z, k, _, slope = inputs
        ctx.save_for_backward(z)
        ctx.k, ctx.slope = k, slope

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
        (z,) = ctx.saved_tensors
        return grad * ctx.slope(z, ctx.k), None, None, None


def pila(z: Tensor, k: float = 5.0) -> Tensor:
    """z for z > 0; (k²/2·z³ − k z² + z)·e^{kz} for z ≤ 0 (gradients by the closed-form derivatives)."""
    if torch.is_grad_enabled() and z.requires_grad:
        return _ClosedFormElementwise.apply(z, k, _pila_values, pila_derivative)
    return _pila_values(z, k)


def pila_derivative(z: Tensor, k: float = 5.0) -> Tensor:
    """1 for z > 0; (k³/2·z³ + k²/2·z² − k z + 1)·e^{kz} for z ≤ 0 (its gradient by Pila'')."""
    if torch.is_grad_enabled() and z.requires_grad:
        return _ClosedFormElementwise.apply(z, k, _pila_derivative_values, pila_second_derivative)
    return _pila_derivative_values(z, k)


__all__ = ["PILA_EXPONENT_FLOOR", "pila", "pila_derivative", "pila_second_derivative"]
