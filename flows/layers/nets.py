"""Conditioner networks for couplings: MLPs for vectors, a conv ResNet (RealNVP) and Glow's conv stack."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .actnorm import ActNorm


def mlp(
    d_in: int, hidden: Sequence[int], d_out: int, *, activation: type[nn.Module] = nn.ReLU, zero_last: bool = True
) -> nn.Sequential:
    """Linear → act → … → Linear; ``hidden=()`` gives a single linear map (Koehler et al.'s linear couplings).

    ``zero_last`` zero-initialises the output layer so that a coupling starts as the identity.
    """
    layers: list[nn.Module] = []
    d = d_in
    for width in hidden:
        layers += [nn.Linear(d, width), activation()]
        d = width
    last = nn.Linear(d, d_out)
    if zero_last:
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    layers.append(last)
    return nn.Sequential(*layers)


class ZeroConv2d(nn.Module):
    """Glow's last conditioner layer: 3×3 conv with zero-initialised weights and bias, output ·exp(3·logs)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.logs = nn.Parameter(torch.zeros(c_out, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) * torch.exp(3.0 * self.logs)


class ActNormOut(nn.Module):
    """ActNorm used inside a conditioner (its log-det is irrelevant there)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = ActNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x)[0]


def glow_net(c_in: int, c_out: int, width: int = 512) -> nn.Sequential:
    """conv3×3 + ActNorm → ReLU → conv1×1 + ActNorm → ReLU → ZeroConv3×3 (Glow's NN())."""
    return nn.Sequential(
        nn.Conv2d(c_in, width, 3, padding=1, bias=False),
        ActNormOut(width),
        nn.ReLU(),
        nn.Conv2d(width, width, 1, bias=False),
        ActNormOut(width),
        nn.ReLU(),
        ZeroConv2d(width, c_out),
    )


class ResidualBlock(nn.Module):
    """x + conv3×3(ReLU(conv3×3(ReLU(x))))."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class MaskedConvResNet(nn.Module):
    """RealNVP's conditioner: input [m⊙x, m] → conv3×3 → residual blocks → ReLU → conv3×3 (2C outputs).

    The mask channel tells the network which positions are conditioning inputs (checkerboard couplings).
    """

    def __init__(self, mask: Tensor, c_out: int, width: int, blocks: int) -> None:
        super().__init__()
        self.register_buffer("mask_channel", mask[:1].unsqueeze(0).clone())
        c_in = mask.shape[0] + 1
        self.net = nn.Sequential(
            nn.Conv2d(c_in, width, 3, padding=1),
            *[ResidualBlock(width) for _ in range(blocks)],
            nn.ReLU(),
            nn.Conv2d(width, c_out, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)  # the coupling starts as the identity
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        m = self.mask_channel.expand(x.shape[0], -1, -1, -1)
        return self.net(torch.cat([x, m], dim=1))
