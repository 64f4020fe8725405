"""The eight 2-D toy densities of FFJORD / residual flows (``toy_data.py::inf_train_gen``), then targets with
disconnected support for CIF (Cornish et al. 2020): ``2gaussians``.

Every sampler draws only from the given ``torch.Generator`` (``None`` means torch's default generator),
works in float64 and returns exactly ``[n, 2]``. sklearn's ``make_swiss_roll``, ``make_circles`` and
``make_moons`` are re-derived here with the same formulas.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ._checks import positive_int

TOY_DATASETS: tuple[str, ...] = (
    "8gaussians",
    "2spirals",
    "checkerboard",
    "circles",
    "moons",
    "pinwheel",
    "rings",
    "swissroll",
    "2gaussians",
)

_F64 = torch.float64
Gen = torch.Generator | None


def _rand(g: Gen, *shape: int) -> Tensor:
    return torch.rand(*shape, generator=g, dtype=_F64)


def _randn(g: Gen, *shape: int) -> Tensor:
    return torch.randn(*shape, generator=g, dtype=_F64)


def _shuffle(x: Tensor, g: Gen) -> Tensor:
    return x[torch.randperm(x.shape[0], generator=g)]


def _ring(n: int, radius: float) -> Tensor:
    """n points at angles linspace(0, 2π, n, endpoint=False) on a circle of the given radius."""
    t = torch.arange(n, dtype=_F64) * (2 * math.pi / n) if n > 0 else torch.zeros(0, dtype=_F64)
    return radius * torch.stack([torch.cos(t), torch.sin(t)], dim=1)


def _swissroll(n: int, g: Gen) -> Tensor:
    """t = 1.5π(1+2U); (t cos t, 21U, t sin t) + N(0, 1); keep (x, z); divide by 5."""
    t = 1.5 * math.pi * (1 + 2 * _rand(g, n))
    height = 21 * _rand(g, n)
    pts = torch.stack([t * torch.cos(t), height, t * torch.sin(t)], dim=1) + _randn(g, n, 3)
    return pts[:, [0, 2]] / 5


def _circles(n: int, g: Gen) -> Tensor:
    """make_circles(factor=0.5, noise=0.08): outer n//2 at r=1, inner rest at r=0.5; shuffle; noise; ×3."""
    n_out = n // 2
    pts = torch.cat([_ring(n_out, 1.0), _ring(n - n_out, 0.5)])
    pts = _shuffle(pts, g) + 0.08 * _randn(g, n, 2)
    return 3 * pts


def _rings(n: int, g: Gen) -> Tensor:
    """Radii 1, .75, .5, .25 (n//4 each, remainder on the innermost), ×3, shuffle, N(0, 0.08²)."""
    q = n // 4
    pts = torch.cat([_ring(q, 1.0), _ring(q, 0.75), _ring(q, 0.5), _ring(n - 3 * q, 0.25)]) * 3
    return _shuffle(pts, g) + 0.08 * _randn(g, n, 2)


def _moons(n: int, g: Gen) -> Tensor:
    """make_moons(noise=.1): (cos s, sin s) and (1−cos s, ½−sin s), s ∈ linspace(0, π); ×2 + (−1, −.2)."""
    n_out = n // 2
    s_out = torch.linspace(0, math.pi, n_out, dtype=_F64)
    s_in = torch.linspace(0, math.pi, n - n_out, dtype=_F64)
    outer = torch.stack([torch.cos(s_out), torch.sin(s_out)], dim=1)
    inner = torch.stack([1 - torch.cos(s_in), 1 - torch.sin(s_in) - 0.5], dim=1)
    pts = _shuffle(torch.cat([outer, inner]), g) + 0.1 * _randn(g, n, 2)
    return pts * 2 + torch.tensor([-1.0, -0.2], dtype=_F64)


def _eight_gaussians(n: int, g: Gen) -> Tensor:
    """Uniform centre among the 8 unit directions ×4, plus N(0, 0.5²) per coordinate; divide by 1.414."""
    angles = torch.arange(8, dtype=_F64) * (math.pi / 4)
    centres = 4 * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    idx = torch.randint(0, 8, (n,), generator=g)
    return (centres[idx] + 0.5 * _randn(g, n, 2)) / 1.414


def _pinwheel(n: int, g: Gen) -> Tensor:
    """5 arms; f = (1 + N(0,.3²), N(0,.1²)); θ = 2πk/5 + .25·exp(f₀); out = 2·f·[[c,-s],[s,c]]."""
    per_arm = -(-n // 5)
    feats = _randn(g, 5 * per_arm, 2) * torch.tensor([0.3, 0.1], dtype=_F64)
    feats[:, 0] += 1.0
    arm = torch.arange(5, dtype=_F64).repeat_interleave(per_arm)
    theta = 2 * math.pi * arm / 5 + 0.25 * torch.exp(feats[:, 0])
    c, s = torch.cos(theta), torch.sin(theta)
    out = torch.stack([feats[:, 0] * c + feats[:, 1] * s, -feats[:, 0] * s + feats[:, 1] * c], dim=1)
    return 2 * _shuffle(out, g)[:n]


def _two_spirals(n: int, g: Gen) -> Tensor:
    """s = √U·3π; d = (−s cos s + U(0,.5), s sin s + U(0,.5)); stack d and −d; /3; + N(0, 0.1²)."""
    half = -(-n // 2)
    s = torch.sqrt(_rand(g, half)) * (540 * 2 * math.pi / 360)
    dx = -torch.cos(s) * s + 0.5 * _rand(g, half)
    dy = torch.sin(s) * s + 0.5 * _rand(g, half)
    d = torch.stack([dx, dy], dim=1)
    pts = torch.cat([d, -d]) / 3
    pts = pts + 0.1 * _randn(g, 2 * half, 2)
    return _shuffle(pts, g)[:n]


def _checkerboard(n: int, g: Gen) -> Tensor:
    """x₁ ~ U(−2,2); x₂ = U(0,1) − 2·Bern(½) + (⌊x₁⌋ mod 2); ×2 → uniform on 8 of 16 cells of [−4,4)²."""
    x1 = 4 * _rand(g, n) - 2
    x2 = _rand(g, n) - 2 * torch.randint(0, 2, (n,), generator=g).to(_F64)
    x2 = x2 + torch.remainder(torch.floor(x1), 2)
    return 2 * torch.stack([x1, x2], dim=1)


TWO_GAUSSIANS_CENTRE = 2.0
TWO_GAUSSIANS_STD = 0.5


def _two_gaussians(n: int, g: Gen) -> Tensor:
    """½N((−2, −2), 0.5²I) + ½N((2, 2), 0.5²I): two modes 11σ apart (disconnected support in practice).

    Its density is known in closed form; the entropy, i.e. the best test NLL, is ≈ 1 + log(2π·0.25) + log 2
    ≈ 2.145 nats.
    """
    side = torch.randint(0, 2, (n,), generator=g).to(_F64) * 2 - 1
    centres = TWO_GAUSSIANS_CENTRE * side.unsqueeze(1).expand(n, 2)
    return centres + TWO_GAUSSIANS_STD * _randn(g, n, 2)


def _snap_to_cells(x: Tensor, exact: Tensor) -> Tensor:
    """Keep each cast coordinate inside the side-2 cell [2⌊v/2⌋, 2⌊v/2⌋+2) of its float64 value v."""
    lo = (2 * torch.floor(exact / 2)).to(x.dtype)
    hi = torch.nextafter(lo + 2, lo)
    return torch.clamp(x, lo, hi)


_SAMPLERS: dict[str, Callable[[int, Gen], Tensor]] = {
    "8gaussians": _eight_gaussians,
    "2spirals": _two_spirals,
    "checkerboard": _checkerboard,
    "circles": _circles,
    "moons": _moons,
    "pinwheel": _pinwheel,
    "rings": _rings,
    "swissroll": _swissroll,
    "2gaussians": _two_gaussians,
}


def sample_toy(
    name: str, n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Draw exactly ``n`` points ``[n, 2]`` from the named toy density (see ``TOY_DATASETS``)."""
    sampler = _SAMPLERS.get(name)
    if sampler is None:
        raise ValueError(f"unknown toy dataset {name!r}; allowed: {', '.join(TOY_DATASETS)}")
    exact = sampler(positive_int(n), generator)
    out = exact.to(dtype)
    if name == "checkerboard" and dtype.is_floating_point:
        out = _snap_to_cells(out, exact)  # rounding to a narrower dtype must not cross a cell edge
    return out
