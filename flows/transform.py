"""Invertible transforms with log-determinants: ``forward(x) -> (z, log|det ∂z/∂x|)``, ``inverse(z) -> x``.

Direction convention: ``forward`` maps data to latent; the log-density of the data is
``log p(x) = log p_Z(f(x)) + log|det J_f(x)|``. Every transform declares whether its log-det is
``exact``, ``unbiased`` (a stochastic estimate with the right mean) or ``biased`` (e.g. a truncated series).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

LogdetKind = Literal["exact", "unbiased", "biased"]
_KIND_ORDER: dict[str, int] = {"exact": 0, "unbiased": 1, "biased": 2}


def combine_kinds(kinds: Iterable[str]) -> LogdetKind:
    """The kind of a sum of log-dets: exact only if all are exact, biased if any is biased."""
    worst = max((_KIND_ORDER[k] for k in kinds), default=0)
    return next(k for k, v in _KIND_ORDER.items() if v == worst)  # type: ignore[return-value]


class Transform(nn.Module):
    """Base class: a bijection on one sample's shape, applied to a batch along dimension 0."""

    logdet_kind: ClassVar[LogdetKind] = "exact"

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def inverse(self, z: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def kind(self) -> LogdetKind:
        """The log-det kind of this transform, including any children."""
        return self.logdet_kind


class Compose(Transform):
    """f = f_n ∘ … ∘ f_1; log|det J_f| = Σ_i log|det J_{f_i}| (chain rule)."""

    def __init__(self, *transforms: Transform) -> None:
        super().__init__()
        self.transforms = nn.ModuleList(transforms)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logdet = x.new_zeros(x.shape[0])
        for t in self.transforms:
            x, ld = t(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: Tensor) -> Tensor:
        for t in reversed(self.transforms):
            z = t.inverse(z)
        return z

    @property
    def kind(self) -> LogdetKind:
        return combine_kinds(t.kind for t in self.transforms)

    def __len__(self) -> int:
        return len(self.transforms)


def sum_except_batch(x: Tensor) -> Tensor:
    """Σ over every dimension but the first."""
    return x.reshape(x.shape[0], -1).sum(dim=1)


def broadcast_logdet(value: Tensor, batch: int) -> Tensor:
    """A sample-independent log-det (a scalar) repeated for a batch."""
    return value.expand(batch)


def as_tensor_like(value: float, ref: Tensor) -> Tensor:
    return torch.as_tensor(value, dtype=ref.dtype, device=ref.device)
