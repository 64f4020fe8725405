"""Solve x = T(x) for a batch: plain iteration, Anderson(m) acceleration with a damped fallback, or Broyden.

Stopping rule (all methods): element-wise |T(x) − x| ≤ tol + tol·|x₀| over the whole batch — the absolute step,
not its square. A solve that misses it raises :class:`ConvergenceError`; it never returns silently unconverged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .anderson import anderson_iteration
from .broyden import broyden
from .config import check_max_iter, check_method, check_tolerance
from .convergence import effective_tolerance, flat_map, residual_scale
from .damped import IterationOutcome, damped_iteration
from .errors import ConvergenceError, SolverReport


def fixed_point(
    T: Callable[[Tensor], Tensor],
    x0: Tensor,
    *,
    tol: float,
    max_iter: int,
    method: str = "anderson",
    raise_on_failure: bool = True,
    secant_eps: float | None = None,
    memory: int = 5,
) -> tuple[Tensor, SolverReport]:
    """x with x ≈ T(x), from ``x0`` (batch-first); T is applied to whole batches and must be batch-independent.

    ``method``: ``plain`` (x ← T(x)), ``anderson`` (Anderson acceleration with ``memory`` past differences,
    capped at the dimension; 1 is the secant step of Monotone Flows' solver; if it stalls for 10 iterations
    or blows up, the damped fallback x ← (1 − α)x + αT(x) continues from each example's best iterate, or restarts
    from x₀ where no iterate beat x₀) or ``broyden`` (root of T(x) − x). ``max_iter`` counts evaluations of T.
    ``tol`` below 4 machine epsilons of x0's dtype is raised to that floor (see :mod:`.convergence`).
    Runs under ``torch.no_grad``. Raises :class:`ConvergenceError` unless ``raise_on_failure`` is False.
    """
    check_method(method, "method")
    check_tolerance(tol, "tol")
    check_max_iter(max_iter, "max_iter")
    if method == "broyden":
        return broyden(lambda x: T(x) - x, x0, tol=tol, max_iter=max_iter, raise_on_failure=raise_on_failure)
    tol = effective_tolerance(tol, x0.dtype)
    shape = tuple(x0.shape)
    with torch.no_grad():
        t_flat = flat_map(T, shape)
        start = x0.reshape(shape[0], -1)
        scale = residual_scale(start)
        fallback = False
        if method == "plain":
            out = damped_iteration(t_flat, start, scale, tol=tol, max_iter=max_iter)
        else:
            out = anderson_iteration(
                t_flat, start, scale, tol=tol, max_iter=max_iter, secant_eps=secant_eps, memory=memory
            )
            if not out.converged and out.iterations < max_iter:
                fallback = True
                out = _damped_fallback(t_flat, start, scale, out, tol=tol, budget=max_iter - out.iterations)
    report = SolverReport(out.iterations, float(out.residual.max()), out.converged, method, fallback, tol)
    if not out.converged and raise_on_failure:
        raise ConvergenceError.from_report(report)
    return out.x.reshape(shape), report


def _damped_fallback(
    T: Callable[[Tensor], Tensor],
    start: Tensor,
    scale: Tensor,
    accelerated: IterationOutcome,
    *,
    tol: float,
    budget: int,
) -> IterationOutcome:
    """Adaptive damping from each example's best accelerated iterate, or from x₀ where x₀ was not beaten."""
    restart = ~(accelerated.residual < accelerated.start_residual)  # no progress, or non-finite
    begin = torch.where(restart[:, None], start, accelerated.x)
    out = damped_iteration(T, begin, scale, tol=tol, max_iter=budget, adaptive=True)
    keep = ~(out.residual < accelerated.residual)
    residual = torch.where(keep, accelerated.residual, out.residual)
    return IterationOutcome(
        torch.where(keep[:, None], accelerated.x, out.x),
        residual,
        accelerated.iterations + out.iterations,
        bool((residual <= tol).all()),
    )
