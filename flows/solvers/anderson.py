"""Anderson acceleration with memory m (type II, Walker & Ni, 2011) of x = T(x), per example on flat tensors.

G_n = T(X_n), F_n = G_n − X_n; with the last m differences ΔF = [F_{i+1} − F_i], ΔG = [G_{i+1} − G_i],
γ = argmin ‖F_n − ΔF γ‖² + ε‖γ‖², X_{n+1} = G_n − ΔG γ. Memory 1 is the secant step of Monotone Flows' solver,
μ = ⟨ΔF, F_n⟩ / (‖ΔF‖² + ε); memory m is capped at the dimension D (beyond it ΔF only adds rank-deficient columns).
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
    memory: int = 1,
) -> IterationOutcome:
    """Accelerated iteration on flat ``[batch, D]`` tensors; stops on convergence, on no batch-wide improvement for
    10 iterations, or when the residual blows up (non-finite or 1e4× the initial one) — the caller falls back."""
    eps = default_secant_eps(x.dtype) if secant_eps is None else secant_eps
    batch = x.shape[0]
    memory = max(1, min(int(memory), x.shape[1]))
    d_hist: list[Tensor] = []  # ΔF columns, newest last
    g_hist: list[Tensor] = []  # ΔG columns
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
            d_hist, g_hist = [*d_hist, d - d_prev][-memory:], [*g_hist, g - g_prev][-memory:]
            x_next = g - _mix(d_hist, g_hist, d, eps)
        g_prev, d_prev, x = g, d, x_next
    return IterationOutcome(best_x, best_r, max_iter, False, start_r)


def _mix(d_hist: list[Tensor], g_hist: list[Tensor], d: Tensor, eps: float) -> Tensor:
    """ΔG γ with γ = (ΔFᵀΔF + εI)^{-1} ΔFᵀ F_n per example (the secant μ(G_n − G_{n−1}) when m = 1)."""
    if len(d_hist) == 1:
        d2 = d_hist[0]
        mu = (d2 * d).sum(dim=1, keepdim=True) / ((d2 * d2).sum(dim=1, keepdim=True) + eps)
        return mu * g_hist[0]
    dF, dG = torch.stack(d_hist, dim=2), torch.stack(g_hist, dim=2)  # [batch, D, m]
    dF_t = dF.transpose(1, 2)
    gram = dF_t @ dF
    gram.diagonal(dim1=1, dim2=2).add_(eps)
    gamma = torch.linalg.solve_ex(gram, dF_t @ d[:, :, None])[0]
    return (dG @ torch.nan_to_num(gamma, nan=0.0, posinf=0.0, neginf=0.0))[:, :, 0]
