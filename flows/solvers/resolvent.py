"""The resolvent w = (I + h)^{-1}(b): solve w + h(w) = b as the fixed point w ← b − h(w) (Lip(h) < 1).

One function serves every implicit solve of the residual family: residual-block inverse (h = g, b = y), monotone
forward (h = g, b = √2x) and inverse (h = −g, b = √2y), implicit-flow forward (h = g_z, b = x + g_x(x)).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from .config import SolverConfig
from .errors import SolverReport
from .fixed_point import fixed_point


def resolvent(
    h: Callable[[Tensor], Tensor],
    b: Tensor,
    config: SolverConfig,
    *,
    x0: Tensor | None = None,
    raise_on_failure: bool = True,
) -> tuple[Tensor, SolverReport]:
    """w with w + h(w) = b, by ``config.method`` (anderson / plain on w ← b − h(w), or broyden), from ``x0``
    (default b); no graph. Raises :class:`ConvergenceError` when ``config.tol`` is not met in ``config.max_iter``."""
    config.validate()
    target = b.detach()
    return fixed_point(
        lambda w: target - h(w),
        target if x0 is None else x0.detach(),
        tol=config.tol,
        max_iter=config.max_iter,
        method=config.method,
        raise_on_failure=raise_on_failure,
        memory=config.anderson_memory,
    )
