"""Bits per dimension: bpd = −(log p(x) − D·log n_bins) / (D·ln 2) for a density on dequantized data in [0,1)^D.

The flow's ``log_prob`` already includes the Jacobian of its own preprocessing (logit or shift layer), so
the only correction left is the −D·log n_bins of rescaling the integer grid {0,…,n_bins−1} to [0,1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def bits_per_dim(log_prob_nats: Tensor | float, shape: Sequence[int], *, n_bins: int = 256) -> Tensor:
    """Discrete-data bits/dim from the continuous log-density (nats) of ``(k + u)/n_bins``-dequantized data."""
    if n_bins < 2:
        raise ValueError(f"n_bins must be >= 2, got {n_bins}")
    dim = math.prod(shape)
    if dim <= 0:
        raise ValueError(f"shape must have a positive number of elements, got {tuple(shape)}")
    lp = torch.as_tensor(log_prob_nats)
    return -(lp - dim * math.log(n_bins)) / (dim * math.log(2.0))
