"""Brute-force log|det ∂f/∂x| per sample: the full Jacobian by reverse-mode autodiff, then ``slogdet``.

Cost is O(D) vector-Jacobian products per sample, so it is only offered for D ≤ ``MAX_EXACT_DIM``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

MAX_EXACT_DIM = 1024


def jacobian_matrices(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Per-sample Jacobians ``[batch, D_out, D_in]`` of ``fn`` (a batch map, applied to one sample at a time)."""
    shape = x.shape[1:]

    def single(xi: Tensor) -> Tensor:
        return fn(xi.reshape(1, *shape)).reshape(-1)

    flat = x.reshape(x.shape[0], -1)
    try:
        return torch.func.vmap(torch.func.jacrev(single))(flat)
    except (
        RuntimeError,
        NotImplementedError,
        ValueError,
    ):  # data-dependent control flow: go sample by sample
        return torch.stack([torch.func.jacrev(single)(xi) for xi in flat])


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
