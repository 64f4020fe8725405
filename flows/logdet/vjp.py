"""Vector–Jacobian products of a batch map y = g(x): vᵀJ, and the powers vᵀJ^k by k successive VJPs.

g is batch-independent (row b of y depends only on row b of x), so one autograd call serves the whole batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor


def vjp(gx: Tensor, x: Tensor, cotangent: Tensor, *, create_graph: bool) -> Tensor:
    """cotangentᵀ ∂g/∂x per example; keeps the graph of ``gx`` for further products."""
    (out,) = torch.autograd.grad(gx, x, cotangent, retain_graph=True, create_graph=create_graph, allow_unused=True)
    return torch.zeros_like(x) if out is None else out


def vjp_powers(gx: Tensor, x: Tensor, v: Tensor, n: int, *, create_graph: bool) -> Iterator[Tensor]:
    """Yield vᵀJ, vᵀJ², …, vᵀJⁿ with J = ∂g/∂x at x (``gx = g(x)`` must carry a graph to ``x``)."""
    current = v
    for _ in range(n):
        current = vjp(gx, x, current, create_graph=create_graph)
        yield current


def batch_dot(a: Tensor, b: Tensor) -> Tensor:
    """⟨a_b, b_b⟩ for every example b (all non-batch dimensions summed)."""
    return (a * b).reshape(a.shape[0], -1).sum(dim=1)
