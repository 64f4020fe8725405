"""ActNorm (Kingma & Dhariwal 2018): y = (x + b) ⊙ exp(w) per channel, data-dependent init on the first batch.

log|det| = (H·W)·Σ_c w_c for images, Σ_d w_d for vectors. Initialisation (pitfall 7 of the reference):
``glow``: b = −mean, w = −log(std + 1e-6); ``resflow``: b = −mean, w = −½·log(max(var_unbiased, 0.2)).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from ..transform import Transform


class ActNorm(Transform):
    """Per-channel affine normalisation; channels are dimension 1 of the batch."""

    def __init__(self, channels: int, *, init: Literal["glow", "resflow"] = "glow") -> None:
        super().__init__()
        if init not in ("glow", "resflow"):
            raise ValueError(f"ActNorm init must be 'glow' or 'resflow', got {init!r}")
        self.init = init
        self.bias = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))

    def _view(self, p: Tensor, x: Tensor) -> Tensor:
        return p.view(1, -1, *([1] * (x.dim() - 2)))

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set b and w so that the output of this batch has zero mean and unit variance per channel."""
        flat = x.transpose(0, 1).reshape(x.shape[1], -1)
        mean = flat.mean(dim=1)
        if self.init == "glow":
            log_scale = -torch.log(flat.std(dim=1, unbiased=False) + 1e-6)
        else:
            log_scale = -0.5 * torch.log(flat.var(dim=1, unbiased=True).clamp_min(0.2))
        self.bias.copy_(-mean)
        self.log_scale.copy_(log_scale)
        self.initialized.fill_(True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and not bool(self.initialized):
            self.initialize(x.detach())
        y = (x + self._view(self.bias, x)) * self._view(self.log_scale, x).exp()
        spatial = x[0, 0].numel()
        return y, (spatial * self.log_scale.sum()).expand(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        return z * torch.exp(-self._view(self.log_scale, z)) - self._view(self.bias, z)
