"""Residual branches g with Lip(g) ≤ coeff (Chen et al. 2019): spectral layers between 1-Lipschitz activations.

Lip(g) ≤ Π Lip(layers) ≤ coeff^L ≤ coeff for coeff ≤ 1, since every activation is 1-Lipschitz (the doubling
ones included: their Jacobian column has norm ≤ 1) and every linear/conv map is normalised to ≤ coeff.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .activations import make_activation
from .lipschitz import SpectralConv2d, SpectralLinear, check_positive_int


def lipschitz_mlp(
    d_in: int,
    hidden: Sequence[int],
    d_out: int,
    *,
    activation: str,
    coeff: float,
    preact: bool = True,
    zero_init_last: bool = True,
    activation_params: dict | None = None,
) -> nn.Sequential:
    """[act] → SpectralLinear(d_in → h₁) → act → … → SpectralLinear(→ d_out) (Residual Flows' toy branch).

    ``preact`` puts an activation before the first linear layer too; a channel-doubling activation doubles
    the input width of the layer after it. ``zero_init_last`` divides the last layer's initial weight by 1000.
    """
    d = check_positive_int("d_in", d_in)
    widths = [check_positive_int("hidden", width) for width in hidden] + [check_positive_int("d_out", d_out)]
    params = dict(activation_params or {})
    layers: list[nn.Module] = []
    for index, width in enumerate(widths):
        if index > 0 or preact:
            act = make_activation(activation, **params)
            layers.append(act)
            d = 2 * d if act.doubles_channels else d
        last = index == len(widths) - 1
        layers.append(SpectralLinear(d, width, coeff=coeff, zero_init=zero_init_last and last))
        d = width
    return nn.Sequential(*layers)


def lipschitz_convnet(
    c_in: int,
    hidden: int,
    c_out: int,
    *,
    kernels: Sequence[int] = (3, 1, 3),
    activation: str,
    coeff: float,
    preact: bool = True,
    activation_params: dict | None = None,
    zero_init_last: bool = False,
) -> nn.Sequential:
    """[act] → SpectralConv k₁ (c_in → hidden) → act → SpectralConv k₂ → … → SpectralConv k_last (→ c_out).

    Residual Flows' image branch with ``kernels=(3, 1, 3)``; paddings k//2 keep the image size (odd k only).
    """
    c = check_positive_int("c_in", c_in)
    check_positive_int("hidden", hidden)
    check_positive_int("c_out", c_out)
    kernels = list(kernels)
    if not kernels:
        raise ValueError("kernels must list at least one kernel size, got an empty sequence")
    for k in kernels:
        check_positive_int("kernels", k)
        if k % 2 == 0:
            raise ValueError(f"kernels must be odd (padding k//2 keeps the image size), got {k}")
    params = dict(activation_params or {})
    layers: list[nn.Module] = []
    for index, k in enumerate(kernels):
        if index > 0 or preact:
            act = make_activation(activation, **params)
            layers.append(act)
            c = 2 * c if act.doubles_channels else c
        last = index == len(kernels) - 1
        width = c_out if last else hidden
        layers.append(SpectralConv2d(c, width, k, padding=k // 2, coeff=coeff, zero_init=zero_init_last and last))
        c = width
    return nn.Sequential(*layers)


__all__ = ["lipschitz_convnet", "lipschitz_mlp"]
