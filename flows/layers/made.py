"""MADE (Germain et al. 2015): an MLP whose masks make output i depend only on inputs with smaller degree.

Degrees: inputs get their position in ``order`` (1…D); hidden units get degrees cycling through 1…D−1;
a weight from degree a to hidden degree b is kept iff b ≥ a, to an output of degree b iff b > a.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MaskedLinear(nn.Linear):
    """y = (W ⊙ M) x + b with a fixed binary mask M."""

    def __init__(self, d_in: int, d_out: int, mask: Tensor) -> None:
        super().__init__(d_in, d_out)
        self.register_buffer("mask", mask.float())

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


def made_degrees(dim: int, hidden: Sequence[int]) -> list[Tensor]:
    """Input degrees 1…D, then hidden degrees cycling 1…max(D−1, 1) for each hidden layer."""
    degrees = [torch.arange(1, dim + 1)]
    for width in hidden:
        degrees.append(torch.arange(width) % max(dim - 1, 1) + 1)
    return degrees


class MADE(nn.Module):
    """Autoregressive network D → ``n_params``·D; output block k's unit i sees only inputs j < i."""

    def __init__(self, dim: int, hidden: Sequence[int], n_params: int = 2) -> None:
        super().__init__()
        self.dim = dim
        self.n_params = n_params
        degrees = made_degrees(dim, hidden)
        layers: list[nn.Module] = []
        for d_prev, d_next in itertools.pairwise(degrees):
            mask = (d_next.view(-1, 1) >= d_prev.view(1, -1)).float()
            layers += [MaskedLinear(len(d_prev), len(d_next), mask), nn.ReLU()]
        out_deg = torch.arange(1, dim + 1).repeat(n_params)
        mask = (out_deg.view(-1, 1) > degrees[-1].view(1, -1)).float()
        last = MaskedLinear(len(degrees[-1]), n_params * dim, mask)
        nn.init.zeros_(last.weight)  # μ = 0, α = 0: the layer starts as the identity
        nn.init.zeros_(last.bias)
        layers.append(last)
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """[B, D] → [B, n_params, D]."""
        return self.net(x).view(x.shape[0], self.n_params, self.dim)
