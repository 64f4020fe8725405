"""Invertible 1×1 convolution / linear map over channels (Kingma & Dhariwal 2018): y = W x at every position.

log|det| = (H·W)·log|det W|, computed in float64. ``lu=True`` parametrises W = P·L·(U + diag(sign(s)·e^{log|s|}))
with P and sign(s) fixed, L unit lower- and U strictly upper-triangular: log|det W| = Σ log|s|.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..transform import Transform


def _random_orthogonal(n: int) -> Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r)).unsqueeze(0)


class InvertibleLinear(Transform):
    """A learned C×C matrix applied to dimension 1 (channels of an image, coordinates of a vector)."""

    def __init__(self, channels: int, *, lu: bool = False) -> None:
        super().__init__()
        self.channels = channels
        self.lu = lu
        w = _random_orthogonal(channels)
        if lu:
            p, lower, upper = torch.linalg.lu(w)
            s = torch.diagonal(upper)
            self.register_buffer("perm", p.float())
            self.register_buffer("sign_s", torch.sign(s).float())
            self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
            self.register_buffer("eye", torch.eye(channels))
            self.lower = nn.Parameter(lower.float())
            self.upper = nn.Parameter(torch.triu(upper, 1).float())
            self.log_s = nn.Parameter(torch.log(torch.abs(s)).float())
        else:
            self.weight = nn.Parameter(w.float())

    def matrix(self) -> Tensor:
        if not self.lu:
            return self.weight
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * self.log_s.exp())
        return self.perm @ lower @ upper

    def log_abs_det(self) -> Tensor:
        """log|det W| in float64, cast back to the parameters' dtype."""
        if self.lu:
            return self.log_s.to(torch.float64).sum().to(self.log_s.dtype)
        return torch.linalg.slogdet(self.weight.to(torch.float64)).logabsdet.to(self.weight.dtype)

    def _apply_matrix(self, w: Tensor, x: Tensor) -> Tensor:
        return torch.einsum("ij,bj...->bi...", w, x)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        spatial = x[0, 0].numel()
        return self._apply_matrix(self.matrix(), x), (spatial * self.log_abs_det()).expand(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        w = self.matrix()
        w_inv = torch.linalg.inv(w.to(torch.float64)).to(w.dtype)
        return self._apply_matrix(w_inv, z)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, lu={self.lu}"
