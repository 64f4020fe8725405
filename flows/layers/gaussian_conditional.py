"""Diagonal Gaussian conditional density N(u; μ(c), diag σ(c)²), [μ, log σ] = net(c) (CIF's p(u|z), q(u|x)).

log N(u; μ, σ²) = Σ_i [−½((u_i − μ_i)/σ_i)² − log σ_i − ½ log 2π]; reparametrised samples u = μ + σ ⊙ ε, ε ~ N(0, I).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..transform import sum_except_batch

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class DiagonalGaussianConditional(nn.Module):
    """A density over samples of ``shape`` given a context; ``net(context)`` has 2·shape[0] channels (μ, log σ)."""

    def __init__(self, net: nn.Module, shape: Sequence[int]) -> None:
        super().__init__()
        self.net = net
        self.shape = tuple(int(s) for s in shape)

    def mean_and_log_std(self, context: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_std = self.net(context).chunk(2, dim=1)
        batch = (context.shape[0], *self.shape)
        return mean.reshape(batch), log_std.reshape(batch)

    def log_prob(self, u: Tensor, context: Tensor) -> Tensor:
        """log q(u | context), summed over every dimension but the batch."""
        mean, log_std = self.mean_and_log_std(context)
        eps = (u - mean) * torch.exp(-log_std)
        return sum_except_batch(-0.5 * eps.pow(2) - log_std - _HALF_LOG_2PI)

    def rsample(self, context: Tensor, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(u, log q(u | context)) with u = μ + σ ⊙ ε differentiable in the net's parameters."""
        mean, log_std = self.mean_and_log_std(context)
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        u = mean + log_std.exp() * eps
        return u, sum_except_batch(-0.5 * eps.pow(2) - log_std - _HALF_LOG_2PI)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"
