"""The stopping rule shared by every solver: element-wise |Δ| ≤ tol + tol·|x₀| over the whole batch.

Δ is the fixed-point residual T(x) − x (the plain step), compared as an absolute value — not squared.
Per example the residual is max_i |Δ_i| / (1 + |x₀_i|); the solve has converged when every example's is ≤ tol.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor


def example_residual(step: Tensor, scale: Tensor) -> Tensor:
    """max_i |step_i| / scale_i per example, for flat ``[batch, D]`` tensors (NaN stays NaN)."""
    ratio = step.abs() / scale
    return ratio.amax(dim=1) if ratio.shape[1] else ratio.new_zeros(ratio.shape[0])


def residual_scale(x0: Tensor) -> Tensor:
    """1 + |x₀| for a flat ``[batch, D]`` initial guess."""
    return 1.0 + x0.abs()


def flat_map(fn: Callable[[Tensor], Tensor], shape: tuple[int, ...]) -> Callable[[Tensor], Tensor]:
    """Wrap a map on tensors of ``shape`` into one on flat ``[batch, D]`` tensors."""
    return lambda flat: fn(flat.reshape(shape)).reshape(flat.shape)
