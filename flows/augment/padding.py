"""Padding with extra dimensions (Koehler, Mehta & Risteski 2021; residual flows' ``--padding``).

The inner flow lives on (d + p,) or (c + p, h, w); the data x are padded with ε and
    zero:      log_prob(x) = log p_flow(x, 0)                    (a joint density at ε = 0, not a bound on p(x)),
    gaussian:  log_prob(x) = log p_flow(x, ε) − log q(ε), ε ~ q   (a lower bound on log p(x) in expectation, ELBO).
q is N(0, σ²) per padded coordinate for vectors and, for images (whose inner flow starts with the logit layer),
N(½, σ²) truncated to (0, 1). ``sample`` drops the padded coordinates. ``jacobian_condition_number`` is the
condition number σ_max/σ_min of the full Jacobian of the data → latent map (at the padded point), for E7.
Zero padding hands the inner flow constant coordinates, which data-dependent initialisation (ActNorm, as in
Glow) cannot normalise (its scale blows up); compare paddings with families without ActNorm (RealNVP).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from ..flow import Flow
from ..jacobian import MAX_EXACT_DIM, jacobian_matrices
from ..transform import sum_except_batch
from .wrapped import WrappedFlow, inner_log_prob

PaddingKind = Literal["zero", "gaussian"]
_SQRT2 = math.sqrt(2.0)


def padded_shape(shape: Sequence[int], padding: int) -> tuple[int, ...]:
    """(d,) → (d + p,); (c, h, w) → (c + p, h, w)."""
    return (int(shape[0]) + int(padding), *(int(s) for s in shape[1:]))


def default_padding_std(shape: Sequence[int]) -> float:
    """σ of Gaussian padding: 1 for vectors, 1/8 (residual flows' N(n/2, n/8) in [0, 1] units) for images."""
    return 1.0 if len(shape) == 1 else 0.125


def _normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * torch.erfc(-x / _SQRT2)


class PaddedFlow(WrappedFlow):
    """Pads the data with ``padding`` coordinates (vectors) or channels (images) for the inner flow."""

    def __init__(
        self,
        inner: Flow,
        shape: Sequence[int],
        *,
        padding: int,
        kind: PaddingKind = "gaussian",
        std: float | None = None,
        name: str = "",
        config: Any = None,
    ) -> None:
        super().__init__(inner, shape, name=name, config=config)
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 1:
            raise ValueError(f"padding: {padding!r} is not an integer >= 1")
        if padded_shape(self.shape, padding) != inner.shape:
            raise ValueError(f"padding: the inner flow's shape {inner.shape} is not {self.shape} padded by {padding}")
        if kind not in ("zero", "gaussian"):
            raise ValueError(f"padding_kind: {kind!r} is not one of: zero, gaussian")
        self.padding = int(padding)
        self.padding_kind = kind
        self.std = float(std if std is not None else default_padding_std(self.shape))
        self.image = len(self.shape) == 3
        self.mean = 0.5 if self.image else 0.0
        if self.std <= 0:
            raise ValueError(f"padding_std: {self.std!r} is not a number > 0")

    def _noise_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, self.padding, *self.shape[1:])

    def _truncation(self, ref: Tensor) -> tuple[Tensor, Tensor]:
        """Φ(a), Φ(b) of the image noise's truncation interval (0, 1) in standard units."""
        lo = torch.as_tensor((0.0 - self.mean) / self.std, dtype=ref.dtype, device=ref.device)
        hi = torch.as_tensor((1.0 - self.mean) / self.std, dtype=ref.dtype, device=ref.device)
        return _normal_cdf(lo), _normal_cdf(hi)

    def noise_log_prob(self, eps: Tensor) -> Tensor:
        """log q(ε) per sample (0 for zero padding)."""
        if self.padding_kind == "zero":
            return eps.new_zeros(eps.shape[0])
        std_units = (eps - self.mean) / self.std
        log_q = -0.5 * std_units.pow(2) - math.log(self.std) - 0.5 * math.log(2 * math.pi)
        if self.image:
            cdf_lo, cdf_hi = self._truncation(eps)
            log_q = log_q - torch.log(cdf_hi - cdf_lo)
        return sum_except_batch(log_q)

    def draw_noise(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """ε for a batch like x: zeros, N(0, σ²), or (images) N(½, σ²) truncated to (0, 1) by inverse CDF."""
        shape = self._noise_shape(x.shape[0])
        if self.padding_kind == "zero":
            return x.new_zeros(shape)
        if not self.image:
            return self.std * torch.randn(shape, generator=generator, dtype=x.dtype, device=x.device)
        cdf_lo, cdf_hi = self._truncation(x)
        uniform = torch.rand(shape, generator=generator, dtype=x.dtype, device=x.device)
        eps = self.mean + self.std * torch.special.ndtri(cdf_lo + (cdf_hi - cdf_lo) * uniform)
        return eps.clamp(0.0, 1.0)

    def pad(self, x: Tensor, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """([x, ε] along dimension 1, log q(ε))."""
        eps = self.draw_noise(x, generator=generator)
        return torch.cat([x, eps], dim=1), self.noise_log_prob(eps)

    def unpad(self, x_padded: Tensor) -> Tensor:
        return x_padded[:, : self.shape[0]]

    def forward(self, x: Tensor, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """x → (z, log|det|) of the inner flow at the padded point [x, ε]; z has the padded shape."""
        self._check_shape(x)
        return self.inner(self.pad(x, generator=generator)[0])

    def inverse(self, z: Tensor) -> Tensor:
        """z (padded shape) → x: the inner inverse without the padded coordinates."""
        return self.unpad(self.inner.inverse(z))

    def log_prob(
        self, x: Tensor, *, exact: bool = False, generator: torch.Generator | None = None, **inner_kwargs: Any
    ) -> Tensor:
        """log p_flow(x, ε) − log q(ε) (zero padding: log p_flow(x, 0))."""
        self._check_shape(x)
        padded, log_q = self.pad(x, generator=generator)
        return inner_log_prob(self.inner, padded, exact=exact, generator=generator, **inner_kwargs) - log_q

    def exact_logdet(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """The inner flow's exact log-det at [x, ε] (Gaussian padding: a fresh ε unless ``generator`` repeats one)."""
        self._check_shape(x)
        return self.inner.exact_logdet(self.pad(x, generator=generator)[0])

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        return self.unpad(self.inner.sample(n, generator=generator))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, padding={self.padding}, kind={self.padding_kind}, std={self.std}"


def jacobian_condition_number(
    flow: Flow, x: Tensor, *, generator: torch.Generator | None = None, max_dim: int = MAX_EXACT_DIM
) -> Tensor:
    """cond(J) = σ_max/σ_min of the full Jacobian of the data → latent map at each x, shape [batch].

    Padded flows are differentiated at the padded point [x, ε] (ε = 0 for zero padding; ``generator`` draws
    Gaussian ε), i.e. the (d + p)×(d + p) Jacobian of the inner flow, as in Koehler et al.; wrappers that only
    change the likelihood (dequantization) are looked through. Flows without a deterministic data → latent map
    (CIF) are refused.
    """
    while isinstance(flow, WrappedFlow) and not isinstance(flow, PaddedFlow):
        flow = flow.inner
    point = x
    if isinstance(flow, PaddedFlow):
        point, _ = flow.pad(x, generator=generator)
        flow = flow.inner
    if not getattr(flow, "has_exact_log_prob", True):
        raise ValueError(f"{flow.name or 'flow'}: no deterministic data → latent map, so no Jacobian condition number")
    dim = point[0].numel()
    if dim > max_dim:
        raise ValueError(f"jacobian_condition_number needs at most {max_dim} dimensions per sample, got {dim}")
    jac = jacobian_matrices(lambda v: flow(v)[0], point.detach())
    singular = torch.linalg.svdvals(jac)
    return singular[:, 0] / singular[:, -1]
