"""Uniform dequantization x = (k + U(0,1)) / n_bins ∈ [0, 1), and random minibatches of an ImageSet."""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import positive_int
from .images import ImageSet


def uniform_dequantize(
    images_uint8: Tensor,
    n_bins: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Return (k + u) / n_bins with u ~ U(0,1); rounding is corrected so that ⌊x·n_bins⌋ = k exactly."""
    n_bins = positive_int(n_bins, "n_bins")
    if images_uint8.is_floating_point() or images_uint8.is_complex():
        raise ValueError(f"expected integer pixel levels, got dtype {images_uint8.dtype}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be floating point, got {dtype}")
    k = images_uint8.to(dtype)
    if k.numel() and (k.min() < 0 or k.max() >= n_bins):
        raise ValueError(f"pixel levels must lie in [0, {n_bins}), got [{int(k.min())}, {int(k.max())}]")
    u = torch.rand(k.shape, generator=generator, dtype=dtype, device=k.device)
    x = (k + u) / n_bins
    # In finite precision k + u can round up to k + 1 (and k / n_bins · n_bins down to k − ε): nudge by ulps.
    for _ in range(16):
        level = torch.floor(x * n_bins)
        high, low = level > k, level < k
        if not (high.any() or low.any()):
            return x
        x = torch.where(high, torch.nextafter(x, torch.zeros_like(x)), x)
        x = torch.where(low, torch.nextafter(x, torch.ones_like(x)), x)
    raise RuntimeError("uniform_dequantize: could not place samples inside their bins")  # pragma: no cover


def sample_batch(dataset: ImageSet, batch_size: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Draw ``batch_size`` images uniformly with replacement; returns uint8 [B, C, H, W]."""
    batch_size = positive_int(batch_size, "batch_size")
    if len(dataset) == 0:
        raise ValueError("cannot sample a batch from an empty ImageSet")
    idx = torch.randint(0, len(dataset), (batch_size,), generator=generator)
    return dataset.images[idx]
