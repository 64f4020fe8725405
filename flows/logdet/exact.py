"""Exact log-det of a power series from the full Jacobian: J_b = ∂g(x_b)/∂x_b by D vector–Jacobian products.

Row i of every example's Jacobian is one VJP with the one-hot cotangent e_i over the whole batch (g is
batch-independent; the D products run as one vmapped backward), then e.g. log det(I + J) by ``slogdet``.
Cost O(D) VJPs, so D ≤ ``MAX_EXACT_DIM``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..jacobian import MAX_EXACT_DIM
from .vjp import vjp


def check_exact_dim(x: Tensor, *, max_dim: int = MAX_EXACT_DIM) -> int:
    """D = numel of one example; a clear ValueError above ``max_dim``."""
    dim = math.prod(x.shape[1:])
    if dim > max_dim:
        raise ValueError(
            f"estimator.kind: 'exact' needs at most {max_dim} dimensions per sample, got {dim} "
            f"(shape {tuple(x.shape[1:])}); use kind 'roulette' or 'truncated'"
        )
    return dim


def batch_jacobian(gx: Tensor, x: Tensor, *, create_graph: bool) -> Tensor:
    """Per-example Jacobians ``[batch, D, D]`` with J[b, i, j] = ∂g_i/∂x_j at x_b (``gx = g(x)`` with a graph)."""
    dim = check_exact_dim(x)
    batch = x.shape[0]
    if gx.shape != x.shape:
        raise ValueError(
            f"g must preserve the shape of x for a square Jacobian: x {tuple(x.shape)}, g {tuple(gx.shape)}"
        )
    eye = torch.eye(dim, dtype=gx.dtype, device=gx.device).unsqueeze(1).expand(dim, batch, dim)
    try:  # all D one-hot cotangents in one vmapped backward pass
        (rows,) = torch.autograd.grad(
            gx, x, eye.reshape(dim, *gx.shape), retain_graph=True, create_graph=create_graph, is_grads_batched=True
        )
        return rows.reshape(dim, batch, dim).transpose(0, 1)
    except (RuntimeError, NotImplementedError):  # a backward without a batching rule: one VJP per row
        rows = [vjp(gx, x, eye[i].reshape(gx.shape), create_graph=create_graph).reshape(batch, dim) for i in range(dim)]
        return torch.stack(rows, dim=1)


def exact_series(gx: Tensor, x: Tensor, exact: Callable[[Tensor], Tensor], *, create_graph: bool) -> Tensor:
    """The exact value of the series (e.g. log det(I + J_g(x))) per example."""
    return exact(batch_jacobian(gx, x, create_graph=create_graph))
