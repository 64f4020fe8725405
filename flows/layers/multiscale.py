"""Multi-scale factor-out (Dinh et al. 2017) and Glow's learned priors, written as bijections.

``FactorOut(inner, prior)`` splits the channels into x₁ (kept, transformed by ``inner``) and x₂ (factored out);
x₂ is scored under N(μ(x₁), σ(x₁)²) by standardising it: ε₂ = (x₂ − μ)·e^{−log σ}, log|det| = −Σ log σ, so
the latent keeps x's shape and the base stays N(0, I). ``prior=None`` factors x₂ out under N(0, I) (RealNVP).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..transform import LogdetKind, Transform, combine_kinds, sum_except_batch
from .nets import ZeroConv2d


class SplitPrior(nn.Module):
    """Glow's split2d prior: [μ, log σ] = ZeroConv2d(x₁), channels interleaved (μ even, log σ odd)."""

    def __init__(self, c_keep: int, c_out: int) -> None:
        super().__init__()
        self.conv = ZeroConv2d(c_keep, 2 * c_out)

    def _params(self, cond: Tensor) -> tuple[Tensor, Tensor]:
        h = self.conv(cond)
        return h[:, 0::2], h[:, 1::2]

    def standardize(self, x2: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_std = self._params(cond)
        return (x2 - mean) * torch.exp(-log_std), -sum_except_batch(log_std)

    def unstandardize(self, eps: Tensor, cond: Tensor) -> Tensor:
        mean, log_std = self._params(cond)
        return eps * log_std.exp() + mean


class FactorOut(Transform):
    """x = [x₁, x₂] along channels → [inner(x₁), ε₂(x₂ | x₁)]."""

    def __init__(self, inner: Transform, prior: SplitPrior | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.prior = prior

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x1, x2 = x.chunk(2, dim=1)
        z1, logdet = self.inner(x1)
        if self.prior is not None:
            x2, ld2 = self.prior.standardize(x2, x1)
            logdet = logdet + ld2
        return torch.cat([z1, x2], dim=1), logdet

    def inverse(self, z: Tensor) -> Tensor:
        z1, e2 = z.chunk(2, dim=1)
        x1 = self.inner.inverse(z1)
        x2 = e2 if self.prior is None else self.prior.unstandardize(e2, x1)
        return torch.cat([x1, x2], dim=1)

    @property
    def kind(self) -> LogdetKind:
        return combine_kinds([self.inner.kind])


class LearnedGaussian(Transform):
    """Glow's learned top prior N(μ, σ²) with learned constants μ, log σ (zero-initialised), as ε = (x − μ)/σ."""

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(*shape))
        self.log_std = nn.Parameter(torch.zeros(*shape))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return (x - self.mean) * torch.exp(-self.log_std), (-self.log_std.sum()).expand(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        return z * self.log_std.exp() + self.mean
