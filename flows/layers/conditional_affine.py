"""Conditional affine map y = (x + t(c)) ⊙ exp(s(c)), log|det ∂y/∂x| = Σ s(c) (Cornish et al. 2020, CIF).

[t, s] = net(c) comes from one network of the context c (first half of its output channels t, second half s).
With a binary ``mask`` the coordinates where m = 1 stay unchanged (t and s are zeroed there): that is an affine
coupling whenever the context reads only m ⊙ x (as in the variational dequantizer). ``conditioner_net`` builds
the small context networks shared by CIF and the dequantizer: tanh MLPs for vectors, 3×3 tanh conv stacks for
images, the last layer zero-initialised so that a fresh layer is the identity.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..transform import sum_except_batch
from .nets import mlp


def conditioner_net(in_shape: Sequence[int], hidden: Sequence[int], out_channels: int) -> nn.Module:
    """Context (in_shape) → ``out_channels`` per coordinate: MLP (vectors) or same-size conv stack (images)."""
    if len(in_shape) == 1:
        return mlp(int(in_shape[0]), hidden, out_channels, activation=nn.Tanh, zero_last=True)
    layers: list[nn.Module] = []
    channels = int(in_shape[0])
    for width in hidden:
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.Tanh()]
        channels = width
    last = nn.Conv2d(channels, out_channels, 3, padding=1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


class ConditionalAffine(nn.Module):
    """y = (x + t(c)) ⊙ exp(s(c)) on the unmasked coordinates; ``net(c)`` has 2·C output channels (t, s)."""

    def __init__(self, net: nn.Module, *, mask: Tensor | None = None) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("keep", None if mask is None else mask.float())

    def shift_and_log_scale(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """(t, s) of the batch; zero where the mask keeps coordinates unchanged."""
        t, s = self.net(context).chunk(2, dim=1)
        if self.keep is not None:
            free = 1 - self.keep
            t, s = t * free, s * free
        return t, s

    def forward(self, x: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        """x → (y, log|det ∂y/∂x|)."""
        t, s = self.shift_and_log_scale(context)
        return (x + t.reshape(x.shape)) * s.reshape(x.shape).exp(), sum_except_batch(s)

    def inverse(self, y: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        """y → (x, log|det ∂y/∂x|) with x = y ⊙ exp(−s(c)) − t(c) (the log-det is the forward one)."""
        t, s = self.shift_and_log_scale(context)
        return y * torch.exp(-s.reshape(y.shape)) - t.reshape(y.shape), sum_except_batch(s)
