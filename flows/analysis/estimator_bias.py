"""Bias and spread of power-series log-det estimators against the exact log-det (i-ResNet Fig. 4; Chen et al. 2019).

Every estimating block contributes Σ_k c_k tr(J_g(u)^k) at its evaluation point u (the block input for residual
blocks, w = (Id + g)^{-1}(√2·x) for monotone ones). With Hutchinson terms a_k = vᵀJ^k v:
truncated T_n = Σ_{k≤n} c_k a_k (biased; E[T_n] = Σ_{k≤n} c_k tr(J^k)); Russian roulette with m = n exact terms
R_n = Σ_{k≤N+m} c_k a_k / P(N ≥ k − m) (unbiased). The whole-flow error is Σ_blocks ±(estimate − exact series).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..blocks import EstimatedLogDetBlock, ImplicitBlock
from ..exact import exact_logdets
from ..logdet import LogDetConfig, PowerSeriesLogDet, batch_jacobian, sample_probe, tail_probability
from ..logdet.coefficients import SeriesKind
from ..logdet.vjp import batch_dot, vjp_powers


@dataclass(frozen=True)
class SeriesSite:
    """One power series of a flow on a batch: branch g, evaluation points u, series, estimator options, sign."""

    g: Callable[[Tensor], Tensor]
    points: Tensor
    series: SeriesKind
    config: LogDetConfig
    sign: float


def series_sites(flow: nn.Module, x: Tensor) -> tuple[list[SeriesSite], Tensor]:
    """Every power series the flow evaluates on ``x`` (in order) and the flow's exact log-det per sample.

    One forward pass in evaluation mode with exact log-dets records the arguments (g, u) of each block's
    estimator. The implicit block's log-det is series_x − series_z, so its second series gets sign −1.
    """
    sites: list[SeriesSite] = []
    handles = []
    for block in flow.modules():
        if not isinstance(block, EstimatedLogDetBlock):
            continue
        for estimator in block.estimators():
            sign = -1.0 if isinstance(block, ImplicitBlock) and estimator is block.series_z else 1.0
            handles.append(estimator.register_forward_pre_hook(_recorder(sites, estimator, block, sign)))
    if not handles:
        raise ValueError(
            "estimator_bias_variance needs power-series log-det blocks (families iresnet, resflow, idensenet, "
            "implicit, monotone); the model has none"
        )
    was_training = flow.training
    flow.eval()
    try:
        with torch.no_grad(), exact_logdets(flow):
            _, exact = flow(x)
    finally:
        for handle in handles:
            handle.remove()
        flow.train(was_training)
    return sites, exact.detach()


def _recorder(
    sites: list[SeriesSite], estimator: PowerSeriesLogDet, block: EstimatedLogDetBlock, sign: float
) -> Callable[..., None]:
    def record(module: nn.Module, args: tuple[Any, ...]) -> None:
        g, points = args[0], args[1]
        sites.append(SeriesSite(g, points.detach(), estimator.series, block.logdet_config, sign))

    return record


def _traces(jac: Tensor, n_max: int) -> Tensor:
    """tr(J^k) for k = 1..n_max, shape [batch, n_max]."""
    power, out = jac, []
    for _ in range(n_max):
        out.append(torch.diagonal(power, dim1=-2, dim2=-1).sum(-1))
        power = power @ jac
    return torch.stack(out, dim=1)


def _draw_counts(config: LogDetConfig, n: int, generator: torch.Generator | None, like: Tensor) -> Tensor:
    """n independent draws of the roulette count N (geometric on {1, 2, …} or Poisson on {0, 1, …})."""
    device = generator.device if generator is not None else like.device
    if config.dist == "geometric":
        draws = torch.empty(n, dtype=torch.float64, device=device).geometric_(config.geom_p, generator=generator)
    else:
        draws = torch.poisson(torch.full((n,), config.poisson_lambda, dtype=torch.float64, device=device), generator)
    return draws.to(device=like.device, dtype=torch.long)


def _hutchinson_terms(site: SeriesSite, repeats: int, n_terms: int, generator: torch.Generator | None) -> Tensor:
    """a_k = vᵀJ^k v for k = 1..n_terms on ``repeats`` copies of the batch (fresh probes per row): [rows, n_terms]."""
    rows = site.points.repeat(repeats, *([1] * (site.points.dim() - 1)))
    with torch.enable_grad():
        leaf = rows.detach().requires_grad_(True)
        gx = site.g(leaf)
        probe = sample_probe(leaf, site.config.probe, generator)
        terms = [batch_dot(v_jk, probe).detach() for v_jk in vjp_powers(gx, leaf, probe, n_terms, create_graph=False)]
    return torch.stack(terms, dim=1)


@dataclass
class _SiteEstimates:
    exact: Tensor  # [batch]
    truncated_mean: Tensor  # [len(terms), batch]: E[T_n] from exact traces
    truncated: Tensor  # [len(terms), rows]
    roulette: Tensor  # [len(terms), rows]
    roulette_terms: Tensor  # [len(terms)]: mean number of evaluated terms


def _site_estimates(
    site: SeriesSite, terms: Sequence[int], repeats: int, generator: torch.Generator | None
) -> _SiteEstimates:
    """Both estimators of one series for every n in ``terms`` (float64, CPU). One draw of probes and of N per row
    serves every n and both estimators (common random numbers), so the curves differ only by what n changes."""
    if site.series.exact is None:
        raise ValueError(f"estimator_bias_variance: series {site.series.name!r} has no exact value to compare with")
    with torch.enable_grad():
        leaf = site.points.detach().requires_grad_(True)
        jac = batch_jacobian(site.g(leaf), leaf, create_graph=False).detach().cpu().double()
    counts = _draw_counts(site.config, site.points.shape[0] * repeats, generator, site.points).cpu()
    n_max = int(counts.max()) + max(terms)
    coeffs = torch.tensor([site.series.coefficient(k) for k in range(1, n_max + 1)], dtype=torch.float64)
    picks = [n - 1 for n in terms]
    truncated_mean = torch.cumsum(coeffs[: max(terms)] * _traces(jac, max(terms)), dim=1)[:, picks].T
    weighted = coeffs * _hutchinson_terms(site, repeats, n_max, generator).cpu().double()  # c_k a_k, [rows, n_max]
    truncated = torch.cumsum(weighted[:, : max(terms)], dim=1)[:, picks].T
    tail = tail_probability(site.config)
    k = torch.arange(1, n_max + 1)
    roulette, used = [], []
    for m in terms:
        weights = torch.tensor([1.0 / tail(j - m) for j in range(1, n_max + 1)], dtype=torch.float64)
        evaluated = k.unsqueeze(0) <= (counts + m).unsqueeze(1)  # terms k ≤ N + m of each row
        roulette.append((weighted * weights * evaluated).sum(dim=1))
        used.append(float((counts + m).double().mean()))
    return _SiteEstimates(
        exact=site.series.exact(jac),
        truncated_mean=truncated_mean,
        truncated=truncated,
        roulette=torch.stack(roulette),
        roulette_terms=torch.tensor(used, dtype=torch.float64),
    )


def _summary(errors: Tensor, batch: int, repeats: int) -> dict[str, list[float]]:
    """Bias (mean error), its standard error and the per-point estimator std from errors [len(terms), rows]."""
    per_point = errors.reshape(errors.shape[0], repeats, batch)
    variance = per_point.var(dim=1, unbiased=True).mean(dim=1) if repeats > 1 else torch.zeros(errors.shape[0])
    bias = errors.mean(dim=1)
    se = (variance / (repeats * batch)).sqrt()
    return {
        "bias": bias.tolist(),
        "abs_bias": bias.abs().tolist(),
        "bias_se": se.tolist(),
        "std": variance.sqrt().tolist(),
    }


def estimator_bias_variance(
    flow: nn.Module,
    x: Tensor,
    terms: Sequence[int],
    repeats: int,
    generator: torch.Generator | None = None,
) -> dict[str, Any]:
    """Whole-flow bias and std of the truncated and Russian-roulette log-det estimators vs the number of terms.

    For each n in ``terms``: the truncated series with n terms, and the roulette estimator with n exact terms
    (N from each block's configured distribution), each drawn ``repeats`` times per sample of ``x`` (fresh probes
    and N per draw; the batch is repeated, so everything is one vectorised pass per block). The exact reference is
    each block's series from its full Jacobian (D ≤ 1024). Returned lists are indexed like the sorted ``terms``:

    - ``truncated``: ``bias`` (mean over samples and draws of estimate − exact), ``abs_bias``, ``bias_se``,
      ``std`` (root-mean over samples of the per-sample std over draws), ``expected_bias`` and
      ``expected_abs_bias`` (the exact truncation error Σ_{k>n} c_k tr(J^k) from exact traces: no Monte Carlo).
    - ``roulette``: ``bias``, ``abs_bias``, ``bias_se``, ``std`` and ``mean_terms`` (evaluated terms per block).
    - ``exact_logdet_mean`` (mean exact log|det ∂f/∂x| of the whole flow), ``blocks``, ``series`` and sizes.
    """
    terms = sorted({_positive_int("terms", n) for n in terms})
    if not terms:
        raise ValueError("terms must list at least one number of series terms (an integer >= 1), got none")
    repeats = _positive_int("repeats", repeats)
    if x.dim() < 2 or x.shape[0] < 1:
        raise ValueError(f"x must be a non-empty batch [batch, *shape], got shape {tuple(x.shape)}")
    sites, exact_total = series_sites(flow, x)
    batch = x.shape[0]
    truncated_err = torch.zeros(len(terms), batch * repeats, dtype=torch.float64)
    roulette_err = torch.zeros_like(truncated_err)
    expected_err = torch.zeros(len(terms), batch, dtype=torch.float64)
    mean_terms = torch.zeros(len(terms), dtype=torch.float64)
    for site in sites:
        est = _site_estimates(site, terms, repeats, generator)
        exact_rows = est.exact.repeat(repeats)
        truncated_err += site.sign * (est.truncated - exact_rows)
        roulette_err += site.sign * (est.roulette - exact_rows)
        expected_err += site.sign * (est.truncated_mean - est.exact)
        mean_terms += est.roulette_terms / len(sites)
    truncated = _summary(truncated_err, batch, repeats)
    truncated["expected_bias"] = expected_err.mean(dim=1).tolist()
    truncated["expected_abs_bias"] = expected_err.abs().mean(dim=1).tolist()
    roulette = _summary(roulette_err, batch, repeats)
    roulette["mean_terms"] = mean_terms.tolist()
    return {
        "terms": terms,
        "repeats": repeats,
        "points": batch,
        "blocks": len(sites),
        "series": sorted({site.series.name for site in sites}),
        "exact_logdet_mean": float(exact_total.double().mean()),
        "truncated": truncated,
        "roulette": roulette,
    }


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


__all__ = ["SeriesSite", "estimator_bias_variance", "series_sites"]
