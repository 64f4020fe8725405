"""Power-series coefficients c_k with Σ_k c_k tr(J^k) = a log-det, and the matching exact value from J.

Residual (Chen et al., 2019): log det(I + J) = Σ_k (−1)^{k+1}/k · tr(J^k).
Monotone (Ahn et al., 2022): log det(I − J) − log det(I + J) = Σ_{k odd} −2/k · tr(J^k).
Both converge when ‖J‖ < 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

Coefficient = Callable[[int], float]


def residual_coefficient(k: int) -> float:
    """c_k = (−1)^{k+1}/k, the series of log det(I + J)."""
    return (-1.0) ** (k + 1) / k


def monotone_coefficient(k: int) -> float:
    """c_k = −2/k for odd k and 0 for even k, the series of log det(I − J) − log det(I + J)."""
    return -2.0 / k if k % 2 == 1 else 0.0


def residual_exact(jac: Tensor) -> Tensor:
    """log|det(I + J)| for a batch of square Jacobians ``[batch, D, D]``."""
    eye = torch.eye(jac.shape[-1], dtype=jac.dtype, device=jac.device)
    return torch.linalg.slogdet(eye + jac).logabsdet


def monotone_exact(jac: Tensor) -> Tensor:
    """log|det(I − J)| − log|det(I + J)| for a batch of square Jacobians ``[batch, D, D]``."""
    eye = torch.eye(jac.shape[-1], dtype=jac.dtype, device=jac.device)
    return torch.linalg.slogdet(eye - jac).logabsdet - torch.linalg.slogdet(eye + jac).logabsdet


@dataclass(frozen=True)
class SeriesKind:
    """A log-det written as a power series: its coefficients and (optionally) its exact value from J."""

    name: str
    coefficient: Coefficient
    exact: Callable[[Tensor], Tensor] | None = None


RESIDUAL_SERIES = SeriesKind("residual", residual_coefficient, residual_exact)
MONOTONE_SERIES = SeriesKind("monotone", monotone_coefficient, monotone_exact)


def as_series(coefficient: SeriesKind | Coefficient) -> SeriesKind:
    """Accept a :class:`SeriesKind` or a bare coefficient function (the two built-ins keep their exact maps)."""
    if isinstance(coefficient, SeriesKind):
        return coefficient
    for known in (RESIDUAL_SERIES, MONOTONE_SERIES):
        if coefficient is known.coefficient:
            return known
    if not callable(coefficient):
        raise TypeError(f"coefficient must be a SeriesKind or a callable k -> c_k, got {type(coefficient).__name__}")
    return SeriesKind(getattr(coefficient, "__name__", "custom"), coefficient, None)
