"""Masked coupling (Dinh et al. 2015, 2017; Kingma & Dhariwal 2018): one mechanism for NICE, RealNVP and Glow.

With a binary mask m (1 = conditioning part, kept) and a conditioner net h = NN(m ⊙ x):
    y = m ⊙ x + (1 − m) ⊙ (x + t(h)) ⊙ s(h),      log|det| = Σ (1 − m) ⊙ log s(h).
The scale function picks the family: ``additive`` s = 1 (NICE), ``tanh`` log s = γ·tanh(raw) with a learned
γ (RealNVP), ``sigmoid`` s = sigmoid(raw + 2) (Glow), ``exp`` log s = raw (linear couplings, Koehler et al.).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..transform import Transform, sum_except_batch

ScaleKind = Literal["additive", "tanh", "sigmoid", "exp"]
SCALE_KINDS: tuple[str, ...] = ("additive", "tanh", "sigmoid", "exp")


def alternating_mask(dim: int, parity: int) -> Tensor:
    """Vector mask 1 on indices i with i ≡ parity (mod 2)."""
    return (torch.arange(dim) % 2 == parity).float()


def half_mask(dim: int, first: bool) -> Tensor:
    """Vector mask 1 on the first ⌈d/2⌉ coordinates (``first``) or on the rest: a fixed partition."""
    m = (torch.arange(dim) < (dim + 1) // 2).float()
    return m if first else 1 - m


def checkerboard_mask(shape: Sequence[int], parity: int) -> Tensor:
    """Image mask (c, h, w): 1 where (i + j + parity) is even, the same for every channel."""
    c, h, w = shape
    ij = torch.arange(h).view(-1, 1) + torch.arange(w).view(1, -1)
    return ((ij + parity) % 2 == 0).float().expand(c, h, w).clone()


def channel_mask(shape: Sequence[int], first: bool) -> Tensor:
    """Image mask (c, h, w): 1 on the first half of the channels (``first``) or on the second half."""
    c, h, w = shape
    m = (torch.arange(c) < c // 2).float().view(c, 1, 1).expand(c, h, w).clone()
    return m if first else 1 - m


def coupling_sizes(mask: Tensor) -> tuple[int, int]:
    """(number of conditioning, number of transformed) coordinates of a vector mask."""
    kept = int(mask.sum().item())
    return kept, mask.numel() - kept


class MaskedCoupling(Transform):
    """Coupling layer with a fixed mask; ``net`` outputs (shift, raw scale) stacked along dimension 1 (or only
    the shift for ``additive``).

    Vector masks (shape (d,)): ``net`` reads only the d_A kept coordinates and outputs for the d_B transformed
    ones (d_A → d_B or 2·d_B), so no width is spent on zeros. Image masks (c, h, w): ``net`` reads m ⊙ x and
    outputs full-size maps (c → c or 2c), as checkerboard masks need.
    """

    def __init__(self, mask: Tensor, net: nn.Module, *, scale: ScaleKind = "tanh") -> None:
        super().__init__()
        if scale not in SCALE_KINDS:
            raise ValueError(f"coupling scale must be one of {', '.join(SCALE_KINDS)}; got {scale!r}")
        mask = mask.float()
        self.register_buffer("mask", mask)
        self.vector = mask.dim() == 1
        if self.vector:
            idx_a, idx_b = torch.nonzero(mask).flatten(), torch.nonzero(1 - mask).flatten()
            self.register_buffer("idx_a", idx_a)
            self.register_buffer("idx_b", idx_b)
            self.register_buffer("merge_order", torch.argsort(torch.cat([idx_a, idx_b])))
        self.net = net
        self.scale_kind = scale
        if scale == "tanh":
            # γ starts at 1: with a zero-initialised conditioner the layer is the identity and still trainable
            self.gamma = nn.Parameter(torch.ones(len(self.idx_b) if self.vector else mask.shape[0]))

    def _shift_and_log_scale(self, x_cond: Tensor) -> tuple[Tensor, Tensor | None]:
        h = self.net(x_cond)
        if self.scale_kind == "additive":
            return h, None
        shift, raw = h.chunk(2, dim=1)
        if self.scale_kind == "tanh":
            gamma = self.gamma.view(1, -1, *([1] * (raw.dim() - 2)))
            return shift, gamma * torch.tanh(raw)
        if self.scale_kind == "sigmoid":
            return shift, -F.softplus(-(raw + 2.0))  # log sigmoid(raw + 2)
        return shift, raw

    def _merge(self, x_a: Tensor, x_b: Tensor) -> Tensor:
        return torch.cat([x_a, x_b], dim=1).index_select(1, self.merge_order)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.vector:
            x_a, x_b = x.index_select(1, self.idx_a), x.index_select(1, self.idx_b)
            shift, log_s = self._shift_and_log_scale(x_a)
            if log_s is None:
                return self._merge(x_a, x_b + shift), x.new_zeros(x.shape[0])
            return self._merge(x_a, (x_b + shift) * log_s.exp()), log_s.sum(dim=1)
        m = self.mask
        shift, log_s = self._shift_and_log_scale(x * m)
        if log_s is None:
            return x + (1 - m) * shift, x.new_zeros(x.shape[0])
        log_s = (1 - m) * log_s
        y = m * x + (1 - m) * (x + shift) * log_s.exp()
        return y, sum_except_batch(log_s)

    def inverse(self, z: Tensor) -> Tensor:
        if self.vector:
            z_a, z_b = z.index_select(1, self.idx_a), z.index_select(1, self.idx_b)
            shift, log_s = self._shift_and_log_scale(z_a)
            x_b = z_b - shift if log_s is None else z_b * torch.exp(-log_s) - shift
            return self._merge(z_a, x_b)
        m = self.mask
        shift, log_s = self._shift_and_log_scale(z * m)
        if log_s is None:
            return z - (1 - m) * shift
        return m * z + (1 - m) * (z * torch.exp(-log_s) - shift)

    def extra_repr(self) -> str:
        return f"scale={self.scale_kind}, mask_shape={tuple(self.mask.shape)}"
