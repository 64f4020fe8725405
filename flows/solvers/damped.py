"""Plain and damped (Krasnosel'skii–Mann) fixed-point iteration: x ← (1 − α)x + α·T(x).

α = 1 is the plain (Banach) iteration, which converges for a contraction. The adaptive variant (Monotone Flows'
fallback) starts each example at α = 0.5 and shrinks it ×0.9 after every 30 non-improving iterations, floor 0.1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .convergence import example_residual

ADAPTIVE_START, ADAPTIVE_SHRINK, ADAPTIVE_PATIENCE, ADAPTIVE_FLOOR = 0.5, 0.9, 30, 0.1


@dataclass
class IterationOutcome:
    """Best iterate per example (flat), its residual per example, map evaluations used, success, and the
    residual per example at the starting point."""

    x: Tensor
    residual: Tensor
    iterations: int
    converged: bool
    start_residual: Tensor | None = None


def damped_iteration(
    T: Callable[[Tensor], Tensor],
    x: Tensor,
    scale: Tensor,
    *,
    tol: float,
    max_iter: int,
    adaptive: bool = False,
) -> IterationOutcome:
    """Iterate on flat ``[batch, D]`` tensors until every example's best residual is ≤ tol (α = 1 unless adaptive).

    The best iterate of an example is T(x) at the x with the smallest residual |T(x) − x|.
    """
    batch = x.shape[0]
    alpha = x.new_full((batch, 1), ADAPTIVE_START if adaptive else 1.0)
    best_x = x.clone()
    best_r = x.new_full((batch,), float("inf"))
    stall = torch.zeros(batch, dtype=torch.long, device=x.device)
    for it in range(1, max_iter + 1):
        tx = T(x)
        step = tx - x
        r = example_residual(step, scale)
        better = r < best_r
        best_r = torch.where(better, r, best_r)
        best_x = torch.where(better[:, None], tx, best_x)
        if bool((best_r <= tol).all()):
            return IterationOutcome(best_x, best_r, it, True)
        if not bool(torch.isfinite(r).all()):
            return IterationOutcome(best_x, best_r, it, False)
        if adaptive:
            stall = torch.where(better, torch.zeros_like(stall), stall + 1)
            shrink = stall >= ADAPTIVE_PATIENCE
            alpha = torch.where(shrink[:, None], (alpha * ADAPTIVE_SHRINK).clamp_min(ADAPTIVE_FLOOR), alpha)
            stall = torch.where(shrink, torch.zeros_like(stall), stall)
        x = x + alpha * step
    return IterationOutcome(best_x, best_r, max_iter, False)
