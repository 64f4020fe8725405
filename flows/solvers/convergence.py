"""The stopping rule shared by every solver: element-wise |Δ| ≤ tol + tol·|x₀| over the whole batch.

Δ is the fixed-point residual T(x) − x (the plain step), compared as an absolute value — not squared.
Per example the residual is max_i |Δ_i| / (1 + |x₀_i|); the solve has converged when every example's is ≤ tol.
A tolerance below what the dtype can resolve (4 machine epsilons in these units, e.g. 4.8e−7 in float32) is raised
to that floor: Monotone Flows' backward tolerance 1e−9 is then met in float32 instead of failing on rounding noise.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

TOL_FLOOR_EPS = 4.0


def example_residual(step: Tensor, scale: Tensor) -> Tensor:
    """max_i |step_i| / scale_i per example, for flat ``[batch, D]`` tensors (NaN stays NaN)."""
    ratio = step.abs() / scale
    return ratio.amax(dim=1) if ratio.shape[1] else ratio.new_zeros(ratio.shape[0])


def effective_tolerance(tol: float, dtype: torch.dtype) -> float:
    """max(tol, 4·eps(dtype)): the smallest residual that rounding noise lets a solve in ``dtype`` reach."""
    return max(float(tol), TOL_FLOOR_EPS * torch.finfo(dtype).eps)


def residual_scale(x0: Tensor) -> Tensor:
    """1 + |x₀| for a flat ``[batch, D]`` initial guess."""
    return 1.0 + x0.abs()


def flat_map(fn: Callable[[Tensor], Tensor], shape: tuple[int, ...]) -> Callable[[Tensor], Tensor]:
    """Wrap a map on tensors of ``shape`` into one on flat ``[batch, D]`` tensors."""
    return lambda flat: fn(flat.reshape(shape)).reshape(flat.shape)
