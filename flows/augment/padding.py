"""Padding with extra dimensions (Koehler, Mehta & Risteski 2021; residual flows' ``--padding``).

The inner flow lives on (d + p,) or (c + p, h, w); the data x are padded with ε. Its density of the data is the
marginal p(x) = ∫ p_flow(x, ε) dε, and that is what ``log_prob`` reports in evaluation mode, as an
importance-weighted lower bound with K samples (``num_samples``; 100 for vectors, 10 for images):
    log p̂(x) = logsumexp_k [log p_flow(x, ε_k) − log r(ε_k | x)] − log K,   ε_k ~ r(· | x),
whose expectation is ≤ log p(x) and which tends to it as K grows. The proposal r is a defensive mixture (a fixed
share of the samples from each part, weighted by the mixture density, which keeps the estimate unbiased for p(x)):
the padding distribution q (``DEFENSIVE_SHARE`` of the samples), and — for vectors of at most ``LAPLACE_MAX_DIM``
padded dimensions — the Gauss–Newton (Laplace) approximation of p_flow(ε | x) (the other 90 %):
linearising z = f(x, ε) around ε = m (q's mean) with J_ε = ∂z/∂ε gives N(m − Λ⁻¹J_εᵀz₀, Λ⁻¹), Λ = J_εᵀJ_ε. Zero
padding trains its inner flow on ε = 0 only and squeezes the padded direction, so q alone would waste every sample.
In training mode ``log_prob`` is the training objective of the padding kind:
    zero:      log p_flow(x, 0)                    (a joint density at ε = 0, not a likelihood of x),
    gaussian:  log p_flow(x, ε) − log q(ε), ε ~ q   (the one-sample ELBO).
q is N(0, σ²) per padded coordinate for vectors and, for images (whose inner flow starts with the logit layer),
N(½, σ²) truncated to (0, 1); zero padding uses the same q as the proposal of its evaluation bound.
``sample`` drops the padded coordinates. ``jacobian_condition_number`` is the condition number σ_max/σ_min of the
full Jacobian of the data → latent map (at the padded point), for E7.
Zero padding hands the inner flow constant coordinates, which data-dependent initialisation (ActNorm, as in
Glow) cannot normalise (its scale blows up); compare paddings with families without ActNorm (RealNVP).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from ..flow import Flow, LikelihoodKind
from ..jacobian import MAX_EXACT_DIM, jacobian_matrices
from ..transform import sum_except_batch
from .wrapped import WrappedFlow, inner_log_prob

PaddingKind = Literal["zero", "gaussian"]
_SQRT2 = math.sqrt(2.0)
LAPLACE_MAX_DIM = 16  # padded vectors up to this dimension get the Gauss–Newton proposal (one Jacobian per point)
VECTOR_SAMPLES, IMAGE_SAMPLES = 100, 10
DEFENSIVE_SHARE = 0.1  # share of the evaluation samples drawn from q itself when the Laplace proposal applies


def default_padding_samples(shape: Sequence[int]) -> int:
    """K of the evaluation bound: 100 for vectors (CIF's 2-D budget), 10 for images."""
    return VECTOR_SAMPLES if len(shape) == 1 else IMAGE_SAMPLES


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
        samples: int | None = None,
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
        self.num_samples = int(samples if samples is not None else default_padding_samples(self.shape))
        if self.num_samples < 1:
            raise ValueError(f"padding_samples: {samples!r} is not an integer >= 1")

    @property
    def likelihood(self) -> LikelihoodKind:  # type: ignore[override]
        """Training with zero padding: the joint density at ε = 0; otherwise a lower bound on log p(x)."""
        return "joint" if self.training and self.padding_kind == "zero" else "bound"

    def own_importance_samples(self) -> tuple[int, ...]:
        if self.training:
            return () if self.padding_kind == "zero" else (1,)
        return (self.num_samples,)

    def _noise_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, self.padding, *self.shape[1:])

    def _truncation(self, ref: Tensor) -> tuple[Tensor, Tensor]:
        """Φ(a), Φ(b) of the image noise's truncation interval (0, 1) in standard units."""
        lo = torch.as_tensor((0.0 - self.mean) / self.std, dtype=ref.dtype, device=ref.device)
        hi = torch.as_tensor((1.0 - self.mean) / self.std, dtype=ref.dtype, device=ref.device)
        return _normal_cdf(lo), _normal_cdf(hi)

    def noise_log_prob(self, eps: Tensor) -> Tensor:
        """log q(ε) per sample of the training noise (0 for zero padding, whose ε is always 0)."""
        if self.padding_kind == "zero":
            return eps.new_zeros(eps.shape[0])
        return self.proposal_log_prob(eps)

    def proposal_log_prob(self, eps: Tensor) -> Tensor:
        """log q(ε) per sample of the Gaussian q (truncated to (0, 1) for images), whatever the padding kind."""
        std_units = (eps - self.mean) / self.std
        log_q = -0.5 * std_units.pow(2) - math.log(self.std) - 0.5 * math.log(2 * math.pi)
        if self.image:
            cdf_lo, cdf_hi = self._truncation(eps)
            log_q = log_q - torch.log(cdf_hi - cdf_lo)
        return sum_except_batch(log_q)

    def draw_noise(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """ε for a batch like x: zeros, N(0, σ²), or (images) N(½, σ²) truncated to (0, 1) by inverse CDF."""
        if self.padding_kind == "zero":
            return x.new_zeros(self._noise_shape(x.shape[0]))
        return self.draw_proposal(x, generator=generator)

    def draw_proposal(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """ε ~ q for a batch like x, whatever the padding kind."""
        shape = self._noise_shape(x.shape[0])
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
        self,
        x: Tensor,
        *,
        exact: bool = False,
        generator: torch.Generator | None = None,
        num_padding_samples: int | None = None,
        **inner_kwargs: Any,
    ) -> Tensor:
        """Training mode: the padding kind's objective; evaluation mode (or ``num_padding_samples``): the
        importance-weighted bound on log p(x) (module docstring)."""
        self._check_shape(x)
        if self.training and num_padding_samples is None:
            padded, log_q = self.pad(x, generator=generator)
            return inner_log_prob(self.inner, padded, exact=exact, generator=generator, **inner_kwargs) - log_q
        k = self.num_samples if num_padding_samples is None else int(num_padding_samples)
        if k < 1:
            raise ValueError(f"num_padding_samples: {num_padding_samples!r} is not an integer >= 1")
        return self.marginal_log_prob(x, k, exact=exact, generator=generator, **inner_kwargs)

    def marginal_log_prob(
        self, x: Tensor, k: int, *, exact: bool = False, generator: torch.Generator | None = None, **inner_kwargs: Any
    ) -> Tensor:
        """logsumexp_k [log p_flow(x, ε_k) − log r(ε_k | x)] − log K with the defensive proposal r."""
        batch = x.shape[0]
        k_laplace = k - max(1, round(DEFENSIVE_SHARE * k)) if self._laplace_applies() else 0
        laplace = self.laplace_proposal(x) if k_laplace > 0 else None
        eps_q = self.draw_proposal(x.repeat_interleave(k - k_laplace, dim=0), generator=generator)
        eps_q = eps_q.view(batch, k - k_laplace, *eps_q.shape[1:])
        if laplace is None:
            eps, log_r = eps_q, self.proposal_log_prob(eps_q.flatten(0, 1)).view(batch, k)
        else:
            mean, prec_chol = laplace
            noise = torch.randn((batch, k_laplace, mean.shape[1]), generator=generator, dtype=x.dtype, device=x.device)
            eps_l = mean.unsqueeze(1) + _solve_upper_t(prec_chol, noise)
            eps = torch.cat([eps_l.to(x.dtype), eps_q], dim=1)
            log_l = _gaussian_log_prob(eps.to(mean.dtype), mean, prec_chol)
            log_q = self.proposal_log_prob(eps.flatten(0, 1)).view(batch, k).to(mean.dtype)
            share = k_laplace / k
            log_r = torch.logaddexp(log_l + math.log(share), log_q + math.log1p(-share)).to(x.dtype)
        padded = torch.cat([x.repeat_interleave(k, dim=0), eps.flatten(0, 1)], dim=1)
        log_p = inner_log_prob(self.inner, padded, exact=exact, generator=generator, **inner_kwargs).view(batch, k)
        return torch.logsumexp(log_p - log_r, dim=1) - math.log(k)

    def _laplace_applies(self) -> bool:
        return not self.image and self.inner.shape[0] <= LAPLACE_MAX_DIM

    def laplace_proposal(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mean [B, p], upper Cholesky factor Uᵀ of the precision Λ = UUᵀ [B, p, p]) of the Gauss–Newton
        approximation of p_flow(ε | x) around ε = q's mean, in float64."""
        point = torch.cat([x, x.new_full(self._noise_shape(x.shape[0]), self.mean)], dim=1).detach()
        with torch.no_grad():
            z0 = self.inner(point)[0].reshape(x.shape[0], -1).double()
        jac = jacobian_matrices(lambda v: self.inner(v)[0], point).detach().double()[:, :, self.shape[0] :]
        precision = jac.transpose(1, 2) @ jac
        eye = torch.eye(self.padding, dtype=precision.dtype, device=precision.device)
        scale = precision.diagonal(dim1=1, dim2=2).mean(1).clamp_min(1e-12)
        precision = precision + (1e-9 * scale).view(-1, 1, 1) * eye
        mean = self.mean - torch.cholesky_solve((jac.transpose(1, 2) @ z0.unsqueeze(2)), _chol(precision))[..., 0]
        return mean, _chol(precision).transpose(1, 2)

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


def _chol(matrix: Tensor) -> Tensor:
    return torch.linalg.cholesky(matrix)


def _solve_upper_t(upper_t: Tensor, noise: Tensor) -> Tensor:
    """δ = U⁻ᵀ n for every draw n (rows of ``noise`` [B, K, p]) given Uᵀ [B, p, p]: cov(δ) = Λ⁻¹ = (UUᵀ)⁻¹."""
    solved = torch.linalg.solve_triangular(upper_t, noise.double().transpose(1, 2), upper=True)
    return solved.transpose(1, 2)


def _gaussian_log_prob(eps: Tensor, mean: Tensor, upper_t: Tensor) -> Tensor:
    """log N(ε; mean, Λ⁻¹) [B, K] with Λ = UUᵀ, Uᵀ given: Σ log diag U − ½|Uᵀ(ε − mean)|² − p/2 log 2π."""
    diff = (eps - mean.unsqueeze(1)).transpose(1, 2)  # [B, p, K]
    white = upper_t @ diff
    log_det = torch.log(torch.diagonal(upper_t, dim1=1, dim2=2)).sum(1, keepdim=True)
    p = mean.shape[1]
    return log_det - 0.5 * white.pow(2).sum(1) - 0.5 * p * math.log(2 * math.pi)
