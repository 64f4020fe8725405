"""Exact log-dets on demand: ``with exact_logdets(model): z, logdet = model(x)``.

Transforms whose log-det is estimated (power series, Hutchinson) opt in by having a boolean attribute
``exact_override``; while it is set they compute their log-det exactly from the full Jacobian of their own
branch (D vector–Jacobian products of g, not of the whole flow), e.g. log det(I + J_g(x)) for a residual block.
Where some estimating transform cannot do that, callers fall back to the brute-force Jacobian of the whole map.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from .transform import Transform


def estimating_leaves(module: nn.Module) -> list[nn.Module]:
    """Transforms with a non-exact log-det that contain no other transform."""
    leaves = []
    for m in module.modules():
        if not isinstance(m, Transform) or m.kind == "exact":
            continue
        if not any(isinstance(c, Transform) for c in m.modules() if c is not m):
            leaves.append(m)
    return leaves


def can_switch_to_exact(module: nn.Module) -> bool:
    """Whether every estimating transform in ``module`` has its own exact path."""
    return all(hasattr(m, "exact_override") for m in estimating_leaves(module))


@contextmanager
def exact_logdets(module: nn.Module) -> Iterator[None]:
    """Within the block, every transform that supports it computes its log-det exactly."""
    switched = [m for m in module.modules() if hasattr(m, "exact_override")]
    previous = [m.exact_override for m in switched]
    for m in switched:
        m.exact_override = True
    try:
        yield
    finally:
        for m, value in zip(switched, previous):
            m.exact_override = value
