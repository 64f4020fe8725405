"""Element-wise bijections: the logit preprocessing, a constant shift and NICE's diagonal scaling."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..transform import Transform, sum_except_batch


class LogitTransform(Transform):
    """y = logit(α + (1−2α)x) on x ∈ [0,1); log|dy/dx| = log(1−2α) − log s − log(1−s), s = α + (1−2α)x.

    The first layer of image flows (Dinh et al. 2017, α = 0.05; α = 1e-6 for MNIST in residual flows).
    """

    def __init__(self, alpha: float = 0.05) -> None:
        super().__init__()
        if not 0.0 <= alpha < 0.5:
            raise ValueError(f"alpha must lie in [0, 0.5), got {alpha}")
        self.alpha = float(alpha)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.numel():
            low, high = (float(v) for v in torch.aminmax(x.detach()))
            if not (low >= 0.0 and high <= 1.0):  # also catches NaN
                raise ValueError(
                    f"x: values in [{low:.4g}, {high:.4g}] are outside [0, 1): image flows take dequantized data in "
                    "[0, 1) (e.g. (k + u)/256 for k in 0..255, u ~ U[0, 1)); use preprocess: none for other data"
                )
        s = self.alpha + (1 - 2 * self.alpha) * x
        y = torch.log(s) - torch.log1p(-s)
        logdet = math.log(1 - 2 * self.alpha) + F.softplus(-y) + F.softplus(y)  # −log s − log(1−s)
        return y, sum_except_batch(logdet)

    def inverse(self, z: Tensor) -> Tensor:
        return (torch.sigmoid(z) - self.alpha) / (1 - 2 * self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Shift(Transform):
    """y = x + b with a constant b (Glow centres [0,1) data with b = −½); log-det 0."""

    def __init__(self, shift: float) -> None:
        super().__init__()
        self.shift = float(shift)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x + self.shift, x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        return z - self.shift


class DiagonalScaling(Transform):
    """NICE's top layer: z = x ⊙ exp(s) with learned s; log|det| = Σ s (Dinh et al. 2015, §3.3)."""

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(*shape))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x * self.log_scale.exp(), self.log_scale.sum().expand(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        return z * torch.exp(-self.log_scale)
