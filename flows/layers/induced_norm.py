"""Induced operator norms ‖W‖_{p→q} = max_{‖v‖_p = 1} ‖Wv‖_q (Chen et al. 2019, "Residual Flows", §4.2).

Generalised power iteration (Higham's algorithm, as in QETLAB's InducedMatrixNorm): u ← normalize_u(Wv, q),
v ← normalize_v(Wᵀu, p), σ̂ = uᵀWv. Since ‖u‖_{q*} = ‖v‖_p = 1 with 1/q + 1/q* = 1, σ̂ ≤ ‖W‖_{p→q} always
(Hölder); each normaliser is the maximiser of the dual pairing, so σ̂ only grows along the iteration.
Closed forms exist when p = 1 (largest column q-norm) or q = ∞ (largest row p*-norm, 1/p + 1/p* = 1).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

INF = float("inf")


def check_norm_order(option: str, p: float) -> float:
    """``p`` as a float in [1, ∞] (``float('inf')`` allowed), else a one-line ``ValueError`` naming ``option``."""
    try:
        value = float(p)
    except (TypeError, ValueError):
        raise ValueError(f"{option} must be a number in [1, inf] (float('inf') allowed), got {p!r}") from None
    if math.isnan(value) or value < 1.0:
        raise ValueError(f"{option} must be a number in [1, inf] (float('inf') allowed), got {p!r}")
    return value


def dual_exponent(p: float) -> float:
    """p* with 1/p + 1/p* = 1 (1 ↔ ∞)."""
    if p == 1.0:
        return INF
    if p == INF:
        return 1.0
    return p / (p - 1.0)


def _one_hot_at_abs_max(x: Tensor) -> Tensor:
    out = torch.zeros_like(x)
    index = torch.argmax(x.abs())
    out[index] = torch.sign(x[index])
    if out[index] == 0:  # x = 0: any unit vector is a maximiser
        out[index] = 1.0
    return out


def _safe_divide(x: Tensor, norm: Tensor) -> Tensor:
    return x / norm.clamp_min(torch.finfo(x.dtype).tiny)


def normalize_v(x: Tensor, p: float) -> Tensor:
    """argmax_{‖v‖_p = 1} vᵀx: sign(x)·|x|^{1/(p−1)} scaled to unit p-norm (p = 1: one-hot at argmax|x|)."""
    if p == 2.0:
        return _safe_divide(x, torch.linalg.vector_norm(x))
    if p == 1.0:
        return _one_hot_at_abs_max(x)
    magnitude = x.abs()
    magnitude = _safe_divide(magnitude, magnitude.max()) ** (1.0 / (p - 1.0))  # p = ∞: exponent 0 → sign(x)
    magnitude = torch.where(x == 0, torch.zeros_like(magnitude), magnitude)
    return torch.sign(x) * _safe_divide(magnitude, torch.linalg.vector_norm(magnitude, ord=p))


def normalize_u(y: Tensor, q: float) -> Tensor:
    """argmax_{‖u‖_{q*} = 1} uᵀy: sign(y)·|y|^{q−1} scaled to unit q*-norm (q = ∞: one-hot at argmax|y|)."""
    if q == 2.0:
        return _safe_divide(y, torch.linalg.vector_norm(y))
    if q == INF:
        return _one_hot_at_abs_max(y)
    magnitude = y.abs()
    magnitude = _safe_divide(magnitude, magnitude.max()) ** (q - 1.0)  # q = 1: exponent 0 → sign(y)
    magnitude = torch.where(y == 0, torch.zeros_like(magnitude), magnitude)
    return torch.sign(y) * _safe_divide(magnitude, torch.linalg.vector_norm(magnitude, ord=dual_exponent(q)))


def has_closed_form(domain: float, codomain: float) -> bool:
    """‖W‖_{p→q} is exact and cheap when p = 1 (columns) or q = ∞ (rows); (2, 2) is not one of them."""
    return domain == 1.0 or codomain == INF


def closed_form_norm(weight: Tensor, domain: float, codomain: float) -> Tensor:
    """Exact ‖W‖_{p→q} for a matrix ``[out, in]`` when ``has_closed_form(p, q)``; differentiable in W.

    p = 1: max_j ‖W[:, j]‖_q (the extreme points of the ℓ1 ball are ±e_j); q = ∞: max_i ‖W[i, :]‖_{p*} (Hölder
    per row). So (1→1) max column ℓ1, (1→2) max column ℓ2, (1→∞) max |entry|, (2→∞) max row ℓ2, (∞→∞) max row ℓ1.
    """
    if domain == 1.0:
        return torch.linalg.vector_norm(weight, ord=codomain, dim=0).max()
    if codomain == INF:
        return torch.linalg.vector_norm(weight, ord=dual_exponent(domain), dim=1).max()
    raise ValueError(f"no closed form for the induced norm domain={domain} → codomain={codomain}; need domain=1 or inf")
