"""Brute-force log|det ∂f/∂x| per sample: the full Jacobian by reverse-mode autodiff, then ``slogdet``.

Cost is O(D) vector-Jacobian products per sample, so it is only offered for D ≤ ``MAX_EXACT_DIM``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

MAX_EXACT_DIM = 1024


def jacobian_matrices(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Per-sample Jacobians ``[batch, D_out, D_in]`` of ``fn``, a batch map whose samples do not interact.

    First ``vmap(jacrev)``; where functorch cannot trace ``fn`` (data-dependent control flow, custom autograd
    Functions such as implicit differentiation, ``autograd.grad`` calls inside the forward) it falls back to
    D_out batched vector–Jacobian products with one-hot cotangents (plain autograd).
    """
    shape = x.shape[1:]

    def single(xi: Tensor) -> Tensor:
        return fn(xi.reshape(1, *shape)).reshape(-1)

    flat = x.reshape(x.shape[0], -1)
    try:
        return torch.func.vmap(torch.func.jacrev(single))(flat)
    except (RuntimeError, NotImplementedError, ValueError, TypeError):
        return jacobian_by_vjps(fn, x)


def jacobian_by_vjps(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``[batch, D_out, D_in]`` by one backward pass per output coordinate (row i: ∂ Σ_b y_b,i / ∂x).

    The D_out cotangents go through one batched backward (``is_grads_batched``) where autograd can vmap the
    backward graph, else one by one (e.g. through a solver with data-dependent stopping in its backward).
    """
    batch = x.shape[0]
    with torch.enable_grad():
        leaf = x.detach().requires_grad_(True)
        y = fn(leaf).reshape(batch, -1)
        d_out = y.shape[1]
        eye = torch.eye(d_out, dtype=y.dtype, device=y.device).unsqueeze(1).expand(d_out, batch, d_out)
        try:
            (rows,) = torch.autograd.grad(y, leaf, eye, retain_graph=True, is_grads_batched=True)
            return rows.reshape(d_out, batch, -1).transpose(0, 1)
        except (RuntimeError, NotImplementedError, ValueError, TypeError):
            pass
        cols = []
        for i in range(d_out):
            (row,) = torch.autograd.grad(y[:, i].sum(), leaf, retain_graph=i < d_out - 1)
            cols.append(row.reshape(batch, -1))
    return torch.stack(cols, dim=1)


def brute_force_logdet(fn: Callable[[Tensor], Tensor], x: Tensor, *, max_dim: int = MAX_EXACT_DIM) -> Tensor:
    """log|det J_fn(x_i)| for every sample i, by the full Jacobian (exact up to floating point)."""
    dim = x[0].numel()
    if dim > max_dim:
        raise ValueError(
            f"exact log-det by brute-force Jacobian needs at most {max_dim} dimensions per sample, got {dim} "
            f"(shape {tuple(x.shape[1:])}); use exact=False for the model's own log-det"
        )
    jac = jacobian_matrices(fn, x)
    return torch.linalg.slogdet(jac).logabsdet
