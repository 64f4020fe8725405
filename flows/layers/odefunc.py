"""Time-dependent layers and the dynamics network f(t, z) of a continuous normalizing flow (FFJORD, Grathwohl et al.
2019, appendix; layer zoo of rtqichen/ffjord).

concat: W[t, x] + b · squash: (Wx + b) ⊙ σ(w_g t + b_g) · concatsquash: (Wx + b) ⊙ σ(w_g t + b_g) + w_b t.
Linear maps for vectors, 3×3 convolutions (stride 1, padding 1) for images; the network applies its activation
after every layer but the last.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LayerType = Literal["concat", "squash", "concatsquash"]
Activation = Literal["tanh", "softplus", "elu", "silu"]


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "softplus": F.softplus,
    "elu": F.elu,
    "silu": F.silu,
}


def _time_column(t: Tensor) -> Tensor:
    return t.reshape(1, 1)


class ConcatLinear(nn.Module):
    """y = W[t, x] + b; computed as W_x x + (b + w_t t) without materialising the time column."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d_in + 1, d_out)  # column 0 multiplies t

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        w = self.linear.weight
        return F.linear(x, w[:, 1:], self.linear.bias + t * w[:, 0])


class ConcatConv2d(nn.Module):
    """y = conv([t·1, x]): the time enters as an extra constant input channel (zero-padded like the image)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in + 1, c_out, kernel_size, padding=kernel_size // 2)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        return self.conv(torch.cat([t.expand(x[:, :1].shape), x], dim=1))


class GatedLayer(nn.Module):
    """y = base(x) ⊙ σ(w_g t + b_g) (+ w_b t when ``hyper_bias``): the squash and concatsquash layers.

    The gate and the hyper-bias act per output feature, so they are folded into the base map's parameters,
    W' = diag(g) W and b' = g ⊙ b + w_b t — the same function at the cost of one linear map (or convolution).
    """

    def __init__(self, base: nn.Linear | nn.Conv2d, d_out: int, *, hyper_bias: bool) -> None:
        super().__init__()
        self.base = base
        self.gate = nn.Linear(1, d_out)
        self.hyper_bias = nn.Linear(1, d_out, bias=False) if hyper_bias else None

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        tt = _time_column(t)
        gate = torch.sigmoid(self.gate(tt)).reshape(-1)
        bias = self.base.bias * gate
        if self.hyper_bias is not None:
            bias = bias + self.hyper_bias(tt).reshape(-1)
        weight = self.base.weight * gate.reshape(-1, *([1] * (self.base.weight.dim() - 1)))
        if isinstance(self.base, nn.Conv2d):
            return self.base._conv_forward(x, weight, bias)
        return F.linear(x, weight, bias)


class SquashLinear(GatedLayer):
    """(Wx + b) ⊙ σ(w_g t + b_g)."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__(nn.Linear(d_in, d_out), d_out, hyper_bias=False)


class ConcatSquashLinear(GatedLayer):
    """(Wx + b) ⊙ σ(w_g t + b_g) + w_b t — FFJORD's toy and tabular default."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__(nn.Linear(d_in, d_out), d_out, hyper_bias=True)


class SquashConv2d(GatedLayer):
    """conv(x) ⊙ σ(w_g t + b_g) per output channel."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2), c_out, hyper_bias=False)


class ConcatSquashConv2d(GatedLayer):
    """conv(x) ⊙ σ(w_g t + b_g) + w_b t per output channel."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2), c_out, hyper_bias=True)


LAYERS: dict[str, tuple[type[nn.Module], type[nn.Module]]] = {
    "concat": (ConcatLinear, ConcatConv2d),
    "squash": (SquashLinear, SquashConv2d),
    "concatsquash": (ConcatSquashLinear, ConcatSquashConv2d),
}


class ODENet(nn.Module):
    """f(t, z) = L_n(t, a(… a(L_1(t, z)))): time-dependent layers with an activation between them."""

    def __init__(self, layers: Sequence[nn.Module], activation: Activation = "tanh") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: {activation!r} is not one of: {', '.join(ACTIVATIONS)}")
        self.layers = nn.ModuleList(layers)
        self.activation = activation
        self._act = ACTIVATIONS[activation]

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            z = layer(t, z)
            if i < last:
                z = self._act(z)
        return z

    def extra_repr(self) -> str:
        return f"activation={self.activation}"


def dynamics_net(
    shape: Sequence[int], hidden: Sequence[int], layer_type: LayerType = "concatsquash", activation: Activation = "tanh"
) -> ODENet:
    """The dynamics of a CNF on samples of ``shape``: (d,) → linear layers d → hidden… → d; (c, h, w) → 3×3
    convolutions c → hidden channels… → c. ``hidden=()`` gives a single layer (no activation)."""
    if layer_type not in LAYERS:
        raise ValueError(f"layer_type: {layer_type!r} is not one of: {', '.join(LAYERS)}")
    if len(shape) not in (1, 3):
        raise ValueError(f"shape: {tuple(shape)!r} is not (d,) for vectors or (c, h, w) for images")
    layer_cls = LAYERS[layer_type][0 if len(shape) == 1 else 1]
    widths = [int(shape[0]), *(int(h) for h in hidden), int(shape[0])]
    return ODENet([layer_cls(a, b) for a, b in itertools.pairwise(widths)], activation)
