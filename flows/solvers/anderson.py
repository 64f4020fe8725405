"""Anderson acceleration with memory 1 (secant extrapolation) of x = T(x), per example on flat tensors.

G_n = T(X_n), dX_n = G_n − X_n, d²X = dX_n − dX_{n−1}, μ_n = ⟨d²X, dX_n⟩ / (‖d²X‖² + ε),
X_{n+1} = G_n − μ_n (G_n − G_{n−1}) (Walker & Ni, 2011; as in Monotone Flows' solver).
ε = 1e−8 in float32 (the reference's value); it is compared with squared differences, so other dtypes scale it by
(machine eps / float32 eps)² — an absolute 1e−8 would switch the acceleration off long before a float64 tol of 1e−10.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .convergence import example_residual
from .damped import IterationOutcome

FLOAT32_SECANT_EPS = 1e-8
STALL_PATIENCE = 10
BLOW_UP = 1e4


def default_secant_eps(dtype: torch.dtype) -> float:
    """ε of the secant step for ``dtype``: 1e−8 · (eps_dtype / eps_float32)² (1e−8 in float32, ~3e−26 in float64)."""
    ratio = torch.finfo(dtype).eps / torch.finfo(torch.float32).eps
    return FLOAT32_SECANT_EPS * ratio * ratio


def anderson_iteration(
    T: Callable[[Tensor], Tensor],
    x: Tensor,
    scale: Tensor,
    *,
    tol: float,
    max_iter: int,
    secant_eps: float | None = None,
) -> IterationOutcome:
    """Accelerated iteration on flat ``[batch, D]`` tensors; stops on convergence, on no batch-wide improvement for
    10 iterations, or when the residual blows up (non-finite or 1e4× the initial one) — the caller falls back."""
    eps = default_secant_eps(x.dtype) if secant_eps is None else secant_eps
    batch = x.shape[0]
    best_x = x.clone()
    best_r = x.new_full((batch,), float("inf"))
    best_batch, stall = float("inf"), 0
    start_r: Tensor | None = None
    g_prev: Tensor | None = None
    d_prev: Tensor | None = None
    for it in range(1, max_iter + 1):
        g = T(x)
        d = g - x
        r = example_residual(d, scale)
        start_r = r if start_r is None else start_r
        better = r < best_r
        best_r = torch.where(better, r, best_r)
        best_x = torch.where(better[:, None], g, best_x)
        if bool((best_r <= tol).all()):
            return IterationOutcome(best_x, best_r, it, True, start_r)
        err = float(r.max())
        if not torch.isfinite(r).all() or err > BLOW_UP * max(float(start_r.max()), tol):
            return IterationOutcome(best_x, best_r, it, False, start_r)
        if err < best_batch:
            best_batch, stall = err, 0
        else:
            stall += 1
            if stall >= STALL_PATIENCE:
                return IterationOutcome(best_x, best_r, it, False, start_r)
        if g_prev is None or d_prev is None:
            x_next = g
        else:
            d2 = d - d_prev
            mu = (d2 * d).sum(dim=1, keepdim=True) / ((d2 * d2).sum(dim=1, keepdim=True) + eps)
            x_next = g - mu * (g - g_prev)
        g_prev, d_prev, x = g, d, x_next
    return IterationOutcome(best_x, best_r, max_iter, False, start_r)
