"""Masked affine autoregressive transform (Papamakarios et al. 2017; Kingma et al. 2016).

MAF orientation (density direction is one pass): z_i = (x_i − μ_i(x_{<i}))·exp(−α_i(x_{<i})),
log|det ∂z/∂x| = −Σ α_i; the inverse x_i = z_i·exp(α_i) + μ_i needs D sequential passes.
IAF orientation swaps the roles: x = z·exp(α(z_{<i})) + μ(z_{<i}) is one pass (fast sampling), and the
data → latent direction is the sequential one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from ..transform import Transform
from .made import MADE


class MaskedAutoregressive(Transform):
    def __init__(self, dim: int, hidden: Sequence[int], *, orientation: Literal["maf", "iaf"] = "maf") -> None:
        super().__init__()
        if orientation not in ("maf", "iaf"):
            raise ValueError(f"orientation must be 'maf' or 'iaf', got {orientation!r}")
        self.dim = dim
        self.orientation = orientation
        self.made = MADE(dim, hidden, n_params=2)

    def _params(self, u: Tensor) -> tuple[Tensor, Tensor]:
        h = self.made(u)
        return h[:, 0], h[:, 1]

    def _sequential(self, target: Tensor, update: str) -> tuple[Tensor, Tensor]:
        """D passes: fill the output u coordinate by coordinate, the parameters coming from u itself.

        ``update="scale"`` solves u = target·e^{α(u)} + μ(u) (MAF inverse); ``"standardize"`` solves
        u = (target − μ(u))·e^{−α(u)} (IAF forward). Returns u and Σα(u).
        """
        u = target.new_zeros(target.shape)
        alpha = target.new_zeros(target.shape)
        for i in range(self.dim):
            mu, alpha = self._params(u)
            if update == "scale":
                ui = target[:, i] * alpha[:, i].exp() + mu[:, i]
            else:
                ui = (target[:, i] - mu[:, i]) * (-alpha[:, i]).exp()
            u = torch.cat([u[:, :i], ui.unsqueeze(1), u[:, i + 1 :]], dim=1)
        return u, alpha.sum(dim=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.orientation == "maf":
            mu, alpha = self._params(x)
            return (x - mu) * (-alpha).exp(), -alpha.sum(dim=1)
        z, alpha_sum = self._sequential(x, "standardize")
        return z, -alpha_sum

    def inverse(self, z: Tensor) -> Tensor:
        if self.orientation == "maf":
            return self._sequential(z, "scale")[0]
        mu, alpha = self._params(z)
        return z * alpha.exp() + mu

    def extra_repr(self) -> str:
        return f"dim={self.dim}, orientation={self.orientation}"
