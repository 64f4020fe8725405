"""How many series terms to evaluate, and their weights: truncated (biased) or Russian roulette (unbiased).

Russian roulette (Chen et al., 2019): draw N, evaluate n = N + m terms and weight term k by
w_k = 1 / P(N ≥ k − m), so E[Σ_{k≤n} w_k a_k] = Σ_k a_k. N ~ geometric(p) on {1, 2, …} with
P(N ≥ j) = (1 − p)^{j−1}, or N ~ Poisson(λ) on {0, 1, …} with P(N ≥ j) = 1 − e^{−λ} Σ_{i<j} λ^i / i!.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .config import LogDetConfig


@dataclass(frozen=True)
class SeriesTerms:
    """Evaluate terms k = 1..len(weights); term k is multiplied by ``weights[k-1]``."""

    weights: tuple[float, ...]

    @property
    def n_terms(self) -> int:
        return len(self.weights)


def geometric_tail(j: int, p: float) -> float:
    """P(N ≥ j) for N ~ geometric(p) on {1, 2, …}: (1 − p)^{j−1} for j ≥ 1, and 1 for j ≤ 1."""
    return 1.0 if j <= 1 else (1.0 - p) ** (j - 1)


def poisson_tail(j: int, lam: float) -> float:
    """P(N ≥ j) for N ~ Poisson(λ), summed over the tail i ≥ j directly (no cancellation in 1 − Σ_{i<j})."""
    if j <= 0:
        return 1.0
    total, i = 0.0, j
    while True:
        term = math.exp(-lam + i * math.log(lam) - math.lgamma(i + 1))
        total += term
        if i > lam and term <= total * 1e-17:
            return total
        i += 1


def tail_probability(config: LogDetConfig) -> Callable[[int], float]:
    """j ↦ P(N ≥ j) for the configured distribution of N."""
    if config.dist == "geometric":
        return functools.partial(geometric_tail, p=config.geom_p)
    return functools.partial(poisson_tail, lam=config.poisson_lambda)


def truncated_terms(n_terms: int) -> SeriesTerms:
    """The first ``n_terms`` terms with weight 1 (biased: the remainder of the series is dropped)."""
    return SeriesTerms((1.0,) * n_terms)


def roulette_weights(n_sampled: int, n_exact_terms: int, tail: Callable[[int], float]) -> SeriesTerms:
    """Weights w_k = 1/P(N ≥ k − m) for k = 1..N + m, given the drawn N and the tail j ↦ P(N ≥ j)."""
    return SeriesTerms(tuple(1.0 / tail(k - n_exact_terms) for k in range(1, n_sampled + n_exact_terms + 1)))


def sample_count(config: LogDetConfig, generator: torch.Generator | None = None) -> int:
    """Draw N from the configured distribution with ``generator`` (or torch's global RNG); never numpy."""
    device = generator.device if generator is not None else torch.device("cpu")
    if config.dist == "geometric":
        draw = torch.empty((), dtype=torch.float64, device=device).geometric_(config.geom_p, generator=generator)
    else:
        rate = torch.full((), config.poisson_lambda, dtype=torch.float64, device=device)
        draw = torch.poisson(rate, generator=generator)
    return int(draw.item())


def sample_terms(config: LogDetConfig, *, training: bool, generator: torch.Generator | None = None) -> SeriesTerms:
    """The term plan of one forward pass: truncated, or a fresh roulette draw (m = eval budget when evaluating)."""
    if config.kind == "truncated":
        return truncated_terms(config.n_terms)
    if config.kind != "roulette":
        raise ValueError(f"estimator.kind: {config.kind!r} has no series terms; expected truncated or roulette")
    m = config.n_exact_terms if training else config.eval_n_exact_terms
    return roulette_weights(sample_count(config, generator), m, tail_probability(config))
