"""Variational dequantization (Ho et al. 2019, Flow++): log P(k) ≥ E_q[log p((k + u)/n) − log q(u | k)].

The data arrive uniformly dequantized, x̃ = (k + U)/n ∈ [0, 1); the wrapper recovers k = ⌊n·x̃⌋ and draws
u = sigmoid(ε′) ∈ (0, 1)^D from a flow q(u | k): ε ~ N(μ(k), σ(k)²), then conditional affine couplings
conditioned on k, then the sigmoid (log q includes the Gaussian density and every Jacobian). The value returned
is on the scale of uniform dequantization, where q is uniform and log q = 0, so ``bits_per_dim`` (which
subtracts D·log n) applies unchanged; in eval mode K importance samples tighten it (logsumexp − log K).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..flow import Flow, LikelihoodKind
from ..layers.conditional_affine import ConditionalAffine, conditioner_net
from ..layers.coupling import alternating_mask, checkerboard_mask
from ..layers.gaussian_conditional import DiagonalGaussianConditional
from ..transform import sum_except_batch
from .wrapped import WrappedFlow, inner_log_prob


class VariationalDequantizer(nn.Module):
    """q(u | k) on samples of ``shape``: a conditional Gaussian, ``blocks`` masked affine couplings, a sigmoid.

    Every network reads the bin index through f(k) = 2k/(n − 1) − 1 ∈ [−1, 1]; coupling masks alternate
    (odd/even coordinates for vectors, a checkerboard for images, whose nets also see the mask as a channel).
    """

    def __init__(self, shape: Sequence[int], n_bins: int, *, blocks: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.n_bins = int(n_bins)
        self.image = len(self.shape) == 3
        channels = self.shape[0]
        self.base = DiagonalGaussianConditional(conditioner_net(self.shape, hidden, 2 * channels), self.shape)
        context = (2 * channels + 1, *self.shape[1:]) if self.image else (2 * channels,)
        masks = [
            checkerboard_mask(self.shape, i % 2) if self.image else alternating_mask(channels, i % 2)
            for i in range(blocks)
        ]
        self.couplings = nn.ModuleList(
            ConditionalAffine(conditioner_net(context, hidden, 2 * channels), mask=m) for m in masks
        )

    def features(self, k: Tensor) -> Tensor:
        return 2 * k / (self.n_bins - 1) - 1

    def _context(self, layer: ConditionalAffine, eps: Tensor, feats: Tensor) -> Tensor:
        parts = [eps * layer.keep, feats]
        if self.image:
            parts.append(layer.keep[:1].expand(eps.shape[0], 1, *self.shape[1:]))
        return torch.cat(parts, dim=1)

    def sample(self, k: Tensor, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(u, log q(u | k)) with u ∈ (0, 1)^D, reparametrised (differentiable in the parameters)."""
        feats = self.features(k)
        eps, log_q = self.base.rsample(feats, generator=generator)
        for layer in self.couplings:
            eps, logdet = layer(eps, self._context(layer, eps, feats))
            log_q = log_q - logdet
        log_q = log_q - sum_except_batch(F.logsigmoid(eps) + F.logsigmoid(-eps))  # du/dε′ = σ(ε′)(1 − σ(ε′))
        return torch.sigmoid(eps), log_q

    def log_prob(self, u: Tensor, k: Tensor) -> Tensor:
        """log q(u | k) of given u ∈ (0, 1)^D (the inverse path: logit, couplings backwards, Gaussian)."""
        feats = self.features(k)
        eps = torch.logit(u)
        log_q = -sum_except_batch(F.logsigmoid(eps) + F.logsigmoid(-eps))
        for layer in reversed(self.couplings):
            eps, logdet = layer.inverse(eps, self._context(layer, eps, feats))
            log_q = log_q - logdet
        return log_q + self.base.log_prob(eps, feats)


class UniformDequantizer(nn.Module):
    """q(u | k) = U(0, 1)^D, log q = 0: the data path's uniform dequantization, drawn as ``uniform_dequantize``
    draws it (one ``torch.rand`` of k's shape), so the wrapper reproduces the plain flow exactly."""

    def sample(self, k: Tensor, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        u = torch.rand(k.shape, generator=generator, dtype=k.dtype, device=k.device)
        return u, k.new_zeros(k.shape[0])

    def log_prob(self, u: Tensor, k: Tensor) -> Tensor:
        return k.new_zeros(k.shape[0])


class DequantizedFlow(WrappedFlow):
    """log_prob(x̃) = logsumexp_K[log p_inner((k + u_j)/n) − log q(u_j | k)] − log K, k = ⌊n·x̃⌋, u_j ~ q(·|k).

    K is 1 in training mode (the ELBO) and ``num_samples`` in eval mode unless given. ``forward``, ``inverse``,
    ``exact_logdet`` and ``sample`` are the inner flow's on the continuous data as given (samples are continuous
    values in [0, 1)); only the likelihood goes through q.
    """

    def __init__(
        self,
        inner: Flow,
        dequantizer: VariationalDequantizer | UniformDequantizer,
        *,
        n_bins: int,
        num_samples: int = 1,
        name: str = "",
        config: Any = None,
    ) -> None:
        super().__init__(inner, inner.shape, name=name, config=config)
        self.dequantizer = dequantizer
        self.n_bins = int(n_bins)
        self.num_samples = int(num_samples)

    @property
    def likelihood(self) -> LikelihoodKind:  # type: ignore[override]
        """A learned q(u|k) gives a lower bound on the discrete log-likelihood; uniform noise the usual density."""
        return "bound" if isinstance(self.dequantizer, VariationalDequantizer) else "exact"

    def own_importance_samples(self) -> tuple[int, ...]:
        return (1 if self.training else self.num_samples,)

    def bins(self, x: Tensor) -> Tensor:
        """k = ⌊n·x̃⌋, clamped to the levels {0, …, n − 1}."""
        return torch.floor(x * self.n_bins).clamp(0, self.n_bins - 1)

    def log_prob(
        self,
        x: Tensor,
        *,
        exact: bool = False,
        num_dequantization_samples: int | None = None,
        generator: torch.Generator | None = None,
        **inner_kwargs: Any,
    ) -> Tensor:
        """The (importance-weighted) variational-dequantization bound in nats on the uniform-dequantization scale."""
        self._check_shape(x)
        k_samples = num_dequantization_samples or (1 if self.training else self.num_samples)
        if isinstance(k_samples, bool) or not isinstance(k_samples, int) or k_samples < 1:
            raise ValueError(f"num_dequantization_samples: {k_samples!r} is not a positive integer")
        k = self.bins(x).repeat_interleave(k_samples, dim=0)
        u, log_q = self.dequantizer.sample(k, generator=generator)
        log_p = inner_log_prob(self.inner, (k + u) / self.n_bins, exact=exact, generator=generator, **inner_kwargs)
        log_w = (log_p - log_q).view(x.shape[0], k_samples)
        return torch.logsumexp(log_w, dim=1) - math.log(k_samples)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, n_bins={self.n_bins}, eval_samples={self.num_samples}"
