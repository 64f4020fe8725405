"""Hutchinson probe vectors v with E[v vᵀ] = I, so that E[vᵀ A v] = tr(A) (Hutchinson, 1989).

Gaussian v ~ N(0, I) (residual-flows, i-DenseNet, Monotone flows) or Rademacher v ∈ {−1, 1}^D (ImpFlow, FFJORD).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor


def sample_probe(
    like: Tensor, kind: Literal["gaussian", "rademacher"], generator: torch.Generator | None = None
) -> Tensor:
    """One probe per example, shaped and typed like ``like``, drawn from ``generator`` (or the global RNG)."""
    device = generator.device if generator is not None else like.device
    if kind == "gaussian":
        v = torch.randn(like.shape, dtype=like.dtype, device=device, generator=generator)
    elif kind == "rademacher":
        bits = torch.randint(0, 2, like.shape, device=device, generator=generator)
        v = (2 * bits - 1).to(like.dtype)
    else:
        raise ValueError(f"estimator.probe: {kind!r} is not one of: gaussian, rademacher")
    return v.to(like.device)
