"""1-D regression targets of the Monotone Flows fitting experiment (``example1d_data.py``).

multiplestepfunc: t(w) = min(max(a·w ∨ 0, min((w−(1−a))/a, 1)), 1), a = .05, x ~ U(−2,2),
y = t(x+2) + t(x+1) + t(x) + t(x−1).   impflowfunc: y = max(0, x/a) + min(0, a·x), a = .1, x ~ U(−1,1).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ._checks import positive_int

ONED_TARGETS: tuple[str, ...] = ("multiplestepfunc", "impflowfunc")

_DOMAINS: dict[str, tuple[float, float]] = {"multiplestepfunc": (-2.0, 2.0), "impflowfunc": (-1.0, 1.0)}


def _step(w: Tensor, a: float = 0.05) -> Tensor:
    """One soft unit step: slope a on [0, 1−a], then slope 1/a up to 1, clipped to [0, 1]."""
    low = torch.clamp(a * w, min=0.0)
    high = torch.clamp((w - (1 - a)) / a, max=1.0)
    return torch.clamp(torch.maximum(low, high), max=1.0)


def multiplestepfunc(x: Tensor) -> Tensor:
    """y = t(x+2) + t(x+1) + t(x) + t(x−1): four soft steps, non-decreasing, 0 at x=−2 and 4 at x=2."""
    return _step(x + 2) + _step(x + 1) + _step(x) + _step(x - 1)


def impflowfunc(x: Tensor, a: float = 0.1) -> Tensor:
    """y = max(0, x/a) + min(0, a·x): slope 10 for x > 0, slope 0.1 for x < 0."""
    return torch.clamp(x / a, min=0.0) + torch.clamp(x * a, max=0.0)


_FUNCS: dict[str, Callable[[Tensor], Tensor]] = {
    "multiplestepfunc": multiplestepfunc,
    "impflowfunc": impflowfunc,
}


def target_function(name: str) -> Callable[[Tensor], Tensor]:
    """Return the elementwise target y = f(x) of the named 1-D experiment."""
    try:
        return _FUNCS[name]
    except KeyError:
        raise ValueError(f"unknown 1-D target {name!r}; allowed: {', '.join(ONED_TARGETS)}") from None


def sample_1d(
    name: str,
    n: int,
    *,
    generator: torch.Generator | None = None,
    linspace: bool = False,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Return (x, f(x)), both [n, 1]; x ~ U(domain), or evenly spaced over the closed domain if linspace."""
    f = target_function(name)
    n = positive_int(n)
    lo, hi = _DOMAINS[name]
    if linspace:
        x = torch.linspace(lo, hi, n, dtype=torch.float64)
    else:
        x = lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)
    x = x.unsqueeze(1)
    return x.to(dtype), f(x).to(dtype)
