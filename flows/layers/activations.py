"""1-Lipschitz activations of the residual family: LipSwish, CLipSwish, Pila, CPila, ELU, ReLU, Sine.

LipSwish(x) = x·σ(βx)/1.1, β = softplus(β_raw) (Chen et al. 2019); CLipSwish(x) = [LipSwish(x), LipSwish(−x)]/1.004
(Perugachi-Diaz et al. 2021); Pila_k(z) = z (z > 0), (k²/2·z³ − k z² + z)·e^{kz} (z ≤ 0), a C³ junction at 0;
CPila(x) = [Pila(x − s), Pila(−x − s)]/N(k, s) (Ahn et al. 2022). The concatenating ones map a channel to two
channels (dim 1); x ↦ (h(x), h(−x)) has the Jacobian column (h'(x), −h'(−x)), so its Lipschitz constant is
sup_x √(h'(x)² + h'(−x)²), which the divisor brings to ≤ 1.

Every activation has ``derivative(x)``, the elementwise derivative, of the OUTPUT's shape: for a concatenating
activation f(x) = [a(x), b(x)] it is [a'(x), b'(x)], so the Jacobian-vector product is
``f.derivative(x) * torch.cat([dx, dx], 1)``.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .lipschitz import check_positive_number
from .pila import pila, pila_derivative

LIPSWISH_DIVISOR = 1.1
"""sup_t d/dt[t·σ(t)] ≈ 1.0998, the same for every β > 0 (the derivative of x·σ(βx) is a function of βx)."""

CLIPSWISH_DIVISOR = 1.004
"""sup_x √(h'(x)² + h'(−x)²) ≈ 1.00397 for h = LipSwish (any β)."""

CPILA_SAFETY_MARGIN = 1e-4
"""The numerically found CPila normaliser is multiplied by (1 + margin), covering the search's error."""


def _check_non_negative(option: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0 or math.isinf(value):
        raise ValueError(f"{option} must be a finite number ≥ 0, got {value!r}")
    return float(value)


def _swish(x: Tensor, beta: Tensor) -> Tensor:
    return x * torch.sigmoid(beta * x)


def _swish_derivative(x: Tensor, beta: Tensor) -> Tensor:
    s = torch.sigmoid(beta * x)
    return s + beta * x * s * (1.0 - s)


class _LearnableBeta(nn.Module):
    """The swish activations' slope β = softplus(β_raw), β_raw a learnable scalar (init 0.5)."""

    def __init__(self) -> None:
        super().__init__()
        self.beta_raw = nn.Parameter(torch.tensor(0.5))

    @property
    def beta(self) -> Tensor:
        return F.softplus(self.beta_raw)


class LipSwish(_LearnableBeta):
    """x·σ(βx)/1.1 with β = softplus(β_raw), β_raw a learnable scalar (init 0.5)."""

    doubles_channels = False

    def forward(self, x: Tensor) -> Tensor:
        return _swish(x, self.beta) / LIPSWISH_DIVISOR

    def derivative(self, x: Tensor) -> Tensor:
        return _swish_derivative(x, self.beta) / LIPSWISH_DIVISOR


class CLipSwish(_LearnableBeta):
    """[LipSwish(x), LipSwish(−x)]/1.004 along dim 1, one shared β; doubles the channels."""

    doubles_channels = True

    def forward(self, x: Tensor) -> Tensor:
        beta = self.beta
        both = torch.cat([_swish(x, beta), _swish(-x, beta)], dim=1)
        return both / (LIPSWISH_DIVISOR * CLIPSWISH_DIVISOR)

    def derivative(self, x: Tensor) -> Tensor:
        """[h'(x), −h'(−x)] along dim 1 (output shape)."""
        beta = self.beta
        both = torch.cat([_swish_derivative(x, beta), -_swish_derivative(-x, beta)], dim=1)
        return both / (LIPSWISH_DIVISOR * CLIPSWISH_DIVISOR)


class Pila(nn.Module):
    """Pila_k(z) (Ahn et al. 2022): identity for z > 0, a cubic times e^{kz} below; C³ at 0, slope in [−0.35, 1]."""

    doubles_channels = False

    def __init__(self, k: float = 5.0) -> None:
        super().__init__()
        self.k = check_positive_number("k", k)

    def forward(self, x: Tensor) -> Tensor:
        return pila(x, self.k)

    def derivative(self, x: Tensor) -> Tensor:
        return pila_derivative(x, self.k)

    def extra_repr(self) -> str:
        return f"k={self.k}"


def _golden_section_max(fn: Callable[[float], float], low: float, high: float, iterations: int = 100) -> float:
    """max of a unimodal fn on [low, high] by golden-section search."""
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = low, high
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = fn(c), fn(d)
    for _ in range(iterations):
        if fc >= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = fn(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = fn(d)
    return max(fc, fd)


@functools.lru_cache(maxsize=256)
def _cpila_raw_constant(scaled_shift: float) -> float:
    """sup_u √(φ(u − σ)² + φ(−u − σ)²) with φ = Pila'₁, σ = k·s (the constant depends on k·s only).

    Pila'_k(z) = φ(kz), so with u = kx the supremum over x is a function of σ = k·s. It is even in u, equals
    1 + (something ≤ 1e-20) for u > σ + 60, and is at least 1 somewhere, so a grid on [0, σ + 60] plus a
    golden-section refinement of every grid-local maximum finds it to ~1e-12.
    """
    sigma = scaled_shift
    phi = functools.partial(pila_derivative, k=1.0)

    def g(u: Tensor) -> Tensor:
        return torch.sqrt(phi(u - sigma) ** 2 + phi(-u - sigma) ** 2)

    with torch.no_grad():
        grid = torch.linspace(0.0, sigma + 60.0, 20001, dtype=torch.float64)
        values = g(grid)
        padded = torch.cat([values[:1] - 1.0, values, values[-1:] - 1.0])
        is_peak = (padded[1:-1] >= padded[:-2]) & (padded[1:-1] >= padded[2:])
        peaks = torch.nonzero(is_peak).flatten()
        peaks = peaks[torch.argsort(values[peaks], descending=True)[:8]]
        best = float(values.max())
        for index in peaks.tolist():
            low = float(grid[max(index - 1, 0)])
            high = float(grid[min(index + 1, len(grid) - 1)])
            refined = _golden_section_max(lambda u: float(g(torch.tensor(u, dtype=torch.float64))), low, high)
            best = max(best, refined)
    return best


def cpila_normaliser(k: float = 5.0, shift: float = 0.2) -> float:
    """N(k, s) = (1 + margin)·sup_x √(Pila'(x − s)² + Pila'(−x − s)²); ≈ 1.0589 for (5, 0.2) (paper: 1.06)."""
    k = check_positive_number("k", k)
    shift = _check_non_negative("shift", shift)
    return _cpila_raw_constant(k * shift) * (1.0 + CPILA_SAFETY_MARGIN)


class CPila(nn.Module):
    """[Pila(x − s), Pila(−x − s)]/N(k, s) along dim 1; N derived numerically so that Lip ≤ 1 for any (k, s)."""

    doubles_channels = True

    def __init__(self, k: float = 5.0, shift: float = 0.2) -> None:
        super().__init__()
        self.k = check_positive_number("k", k)
        self.shift = _check_non_negative("shift", shift)
        self.normaliser = cpila_normaliser(self.k, self.shift)

    def forward(self, x: Tensor) -> Tensor:
        # one Pila over [x − s, −x − s]: half the kernel launches of two calls, the same values
        return pila(torch.cat([x, -x], dim=1) - self.shift, self.k) / self.normaliser

    def derivative(self, x: Tensor) -> Tensor:
        """[Pila'(x − s), −Pila'(−x − s)]/N along dim 1 (output shape)."""
        first, second = pila_derivative(torch.cat([x, -x], dim=1) - self.shift, self.k).chunk(2, dim=1)
        return torch.cat([first, -second], dim=1) / self.normaliser

    def extra_repr(self) -> str:
        return f"k={self.k}, shift={self.shift}, normaliser={self.normaliser:.6f}"


class ELU(nn.Module):
    """ELU with α = 1 (slope in (0, 1])."""

    doubles_channels = False

    def forward(self, x: Tensor) -> Tensor:
        return F.elu(x)

    def derivative(self, x: Tensor) -> Tensor:
        return torch.where(x > 0, torch.ones_like(x), torch.exp(torch.clamp(x, max=0.0)))


class ReLU(nn.Module):
    """max(x, 0); derivative 1 for x > 0, else 0."""

    doubles_channels = False

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)

    def derivative(self, x: Tensor) -> Tensor:
        return (x > 0).to(x.dtype)


class Sine(nn.Module):
    """sin(2πx)/(2π), 1-Lipschitz (ImpFlow's toy activation)."""

    doubles_channels = False

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(2.0 * math.pi * x) / (2.0 * math.pi)

    def derivative(self, x: Tensor) -> Tensor:
        return torch.cos(2.0 * math.pi * x)


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "lipswish": LipSwish,
    "clipswish": CLipSwish,
    "pila": Pila,
    "cpila": CPila,
    "elu": ELU,
    "relu": ReLU,
    "sin": Sine,
}


def make_activation(name: str, **params: float) -> nn.Module:
    """An activation by name (see ``ACTIVATIONS``) with its parameters, e.g. ``make_activation("cpila", k=5)``."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {name!r}")
    cls = ACTIVATIONS[name]
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        what = ", ".join(allowed) if allowed else "none"
        raise ValueError(f"activation {name!r} has no parameter {unknown[0]!r}; its parameters: {what}")
    return cls(**params)
