"""Power-series log-det estimators: coefficients, term policies, unbiasedness, Neumann gradients, memory-efficient
backward and the exact kind — checked in float64 against brute-force Jacobians (torch.func.jacrev + slogdet)."""

from __future__ import annotations

import itertools
import math
import re

import pytest
import torch
from torch import Tensor, nn

from nflab.flows.logdet import (
    MONOTONE_SERIES,
    RESIDUAL_SERIES,
    LogDetConfig,
    PowerSeriesLogDet,
    SeriesKind,
    UnequalUpstreamGradientError,
    geometric_tail,
    monotone_coefficient,
    poisson_tail,
    residual_coefficient,
    sample_count,
    sample_probe,
    sample_terms,
)
from nflab.flows.registry import ConfigError

DTYPE = torch.float64
DIM = 3
SERIES = {"residual": RESIDUAL_SERIES, "monotone": MONOTONE_SERIES}


def lipschitz_net(dim: int = DIM, hidden: int = 4, lip: float = 0.9, seed: int = 3) -> nn.Module:
    """Linear → tanh → Linear, each weight rescaled to spectral norm √lip, so Lip(g) ≤ lip.

    At X0 the Jacobian has spectral norm ≈ 0.63: large terms, yet a finite roulette variance for geometric(½).
    """
    gen = torch.Generator().manual_seed(seed)
    first, second = nn.Linear(dim, hidden).to(DTYPE), nn.Linear(hidden, dim).to(DTYPE)
    with torch.no_grad():
        for layer in (first, second):
            weight = torch.randn(layer.weight.shape, generator=gen, dtype=DTYPE)
            layer.weight.copy_(math.sqrt(lip) * weight / torch.linalg.matrix_norm(weight, 2))
            layer.bias.copy_(0.1 * torch.randn(layer.bias.shape, generator=gen, dtype=DTYPE))
    return nn.Sequential(first, nn.Tanh(), second)


def jacobian_of(g: nn.Module, x0: Tensor, *, create_graph: bool = False) -> Tensor:
    """The D×D Jacobian of g at one point x0 [D] (independent of the code under test)."""
    return torch.autograd.functional.jacobian(lambda z: g(z[None])[0], x0, create_graph=create_graph)


def exact_value(series: str, jac: Tensor) -> Tensor:
    eye = torch.eye(jac.shape[-1], dtype=jac.dtype)
    plus = torch.linalg.slogdet(eye + jac).logabsdet
    return plus if series == "residual" else torch.linalg.slogdet(eye - jac).logabsdet - plus


def power_series(series: str, jac: Tensor, weights: list[float]) -> Tensor:
    """Σ_k c_k w_k tr(J^k), computed from the matrix."""
    coefficient = SERIES[series].coefficient
    total, power = jac.new_zeros(()), torch.eye(jac.shape[-1], dtype=jac.dtype)
    for k, w in enumerate(weights, start=1):
        power = power @ jac
        total = total + coefficient(k) * w * torch.trace(power)
    return total


X0 = torch.tensor([0.2, -0.3, 0.1], dtype=DTYPE)


# --- coefficients -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("series", ["residual", "monotone"])
def test_series_coefficients_sum_to_the_logdet(series: str) -> None:
    gen = torch.Generator().manual_seed(3)
    jac = torch.randn(4, 4, generator=gen, dtype=DTYPE)
    jac = 0.7 * jac / torch.linalg.matrix_norm(jac, 2)
    assert torch.allclose(power_series(series, jac, [1.0] * 200), exact_value(series, jac), atol=1e-12)
    assert not torch.allclose(power_series(series, jac, [1.0] * 2), exact_value(series, jac), atol=1e-3)


def test_coefficient_values() -> None:
    assert [residual_coefficient(k) for k in range(1, 5)] == [1.0, -0.5, 1 / 3, -0.25]
    assert [monotone_coefficient(k) for k in range(1, 6)] == [-2.0, 0.0, -2 / 3, 0.0, -0.4]


# --- term policies ------------------------------------------------------------------------------------------------


def test_tail_probabilities() -> None:
    assert geometric_tail(0, 0.3) == geometric_tail(1, 0.3) == 1.0
    assert geometric_tail(4, 0.3) == pytest.approx(0.7**3, rel=1e-14)
    lam = 2.0
    for j in range(0, 8):
        closed = 1.0 - math.exp(-lam) * sum(lam**i / math.factorial(i) for i in range(j))
        assert poisson_tail(j, lam) == pytest.approx(closed, rel=1e-12, abs=1e-15)
    assert poisson_tail(30, lam) == pytest.approx(math.exp(-lam) * lam**30 / math.factorial(30), rel=1e-2)


@pytest.mark.parametrize(("dist", "mean"), [("geometric", 1 / 0.4), ("poisson", 1.5)])
def test_term_count_distribution_and_reproducibility(dist: str, mean: float) -> None:
    cfg = LogDetConfig(dist=dist, geom_p=0.4, poisson_lambda=1.5)
    draws = [sample_count(cfg, torch.Generator().manual_seed(0)) for _ in range(3)]
    assert len(set(draws)) == 1  # same seed, same N
    gen = torch.Generator().manual_seed(1)
    counts = torch.tensor([sample_count(cfg, gen) for _ in range(4000)], dtype=DTYPE)
    assert counts.min() >= (1 if dist == "geometric" else 0)
    assert abs(counts.mean().item() - mean) < 4 * counts.std().item() / math.sqrt(4000)


def test_roulette_weights_offset_by_exact_terms_and_eval_budget() -> None:
    cfg = LogDetConfig(kind="roulette", dist="geometric", geom_p=0.5, n_exact_terms=2, eval_n_exact_terms=20)
    gen = torch.Generator().manual_seed(5)
    n_drawn = sample_count(cfg, torch.Generator().manual_seed(5))
    terms = sample_terms(cfg, training=True, generator=gen)
    assert terms.n_terms == n_drawn + 2
    expected = [1.0 / geometric_tail(k - 2, 0.5) for k in range(1, terms.n_terms + 1)]
    assert terms.weights[:3] == (1.0, 1.0, 1.0)  # k ≤ m and k = m + 1 (P(N ≥ 1) = 1)
    assert terms.weights == pytest.approx(expected, rel=1e-15)
    assert sample_terms(cfg, training=False, generator=gen).n_terms >= 21
    assert sample_terms(LogDetConfig(kind="truncated", n_terms=5), training=True).weights == (1.0,) * 5


@pytest.mark.parametrize("kind", ["gaussian", "rademacher"])
def test_probes_have_identity_second_moment(kind: str) -> None:
    like = torch.zeros(20000, 3, dtype=DTYPE)
    v = sample_probe(like, kind, torch.Generator().manual_seed(2))
    second = v.T @ v / v.shape[0]
    assert torch.allclose(second, torch.eye(3, dtype=DTYPE), atol=0.05)
    if kind == "rademacher":
        assert set(v.unique().tolist()) == {-1.0, 1.0}


# --- the estimate is exactly vᵀ(Σ c_k w_k J^k)v for the drawn N and v ------------------------------------------------


@pytest.mark.parametrize("series", ["residual", "monotone"])
@pytest.mark.parametrize("kind", ["truncated", "roulette"])
def test_estimate_is_the_probed_weighted_series(series: str, kind: str) -> None:
    g = lipschitz_net()
    cfg = LogDetConfig(kind=kind, n_terms=4, dist="poisson", n_exact_terms=2, probe="rademacher", n_probes=2)
    x = X0.expand(5, DIM).clone() + 0.1 * torch.arange(5, dtype=DTYPE)[:, None]
    est = PowerSeriesLogDet(SERIES[series], cfg, generator=torch.Generator().manual_seed(11))
    gx, logdet = est(g, x, training=True)
    replay = torch.Generator().manual_seed(11)
    terms = sample_terms(cfg, training=True, generator=replay)
    probes = [sample_probe(x, "rademacher", replay) for _ in range(2)]
    assert est.last_n_terms == terms.n_terms
    for b in range(5):
        jac = jacobian_of(g, x[b])
        poly = torch.zeros(DIM, DIM, dtype=DTYPE)
        power = torch.eye(DIM, dtype=DTYPE)
        for k, w in enumerate(terms.weights, start=1):
            power = power @ jac
            poly = poly + SERIES[series].coefficient(k) * w * power
        expected = sum(v[b] @ poly @ v[b] for v in probes) / 2
        assert logdet[b].item() == pytest.approx(expected.item(), abs=1e-12)
    assert torch.allclose(gx, g(x), atol=0)


# --- unbiasedness ---------------------------------------------------------------------------------------------------


def roulette_means(series: str, cfg: LogDetConfig, draws: int, batch: int, seed: int) -> Tensor:
    """Per-draw batch means of the estimate at copies of X0 (one N per forward, so draws are the i.i.d. unit)."""
    g = lipschitz_net()
    est = PowerSeriesLogDet(SERIES[series], cfg, generator=torch.Generator().manual_seed(seed))
    x = X0.expand(batch, DIM)
    with torch.no_grad():
        return torch.stack([est(g, x, training=False)[1].mean() for _ in range(draws)])


@pytest.mark.parametrize("series", ["residual", "monotone"])
@pytest.mark.parametrize("dist", ["geometric", "poisson"])
@pytest.mark.parametrize("m", [0, 2])
@pytest.mark.parametrize("probe", ["gaussian", "rademacher"])
def test_roulette_is_unbiased(series: str, dist: str, m: int, probe: str) -> None:
    cfg = LogDetConfig(kind="roulette", dist=dist, n_exact_terms=m, eval_n_exact_terms=m, probe=probe)
    means = roulette_means(series, cfg, draws=600, batch=16, seed=17)
    exact = exact_value(series, jacobian_of(lipschitz_net(), X0)).item()
    se = means.std().item() / math.sqrt(len(means))
    assert se < 0.05 * abs(exact)  # the test has power
    assert abs(means.mean().item() - exact) < 4 * se


def test_truncated_bias_is_the_truncated_series() -> None:
    g = lipschitz_net()
    jac = jacobian_of(g, X0)
    exact = exact_value("residual", jac).item()
    for n in (1, 2, 4):
        cfg = LogDetConfig(kind="truncated", n_terms=n)
        est = PowerSeriesLogDet(RESIDUAL_SERIES, cfg, generator=torch.Generator().manual_seed(n))
        with torch.no_grad():
            values = est(g, X0.expand(20000, DIM), training=False)[1]
        se = values.std().item() / math.sqrt(len(values))
        truncated = power_series("residual", jac, [1.0] * n).item()
        assert abs(values.mean().item() - truncated) < 4 * se
        if n <= 2:
            assert abs(truncated - exact) > 4 * se  # the bias is real and visible at this sample size
    biases = [abs(power_series("residual", jac, [1.0] * n).item() - exact) for n in range(1, 8)]
    assert all(a > b for a, b in itertools.pairwise(biases))
    assert LogDetConfig(kind="truncated").logdet_kind == "biased"


def test_roulette_variance_falls_with_exact_terms() -> None:
    spreads = []
    for m in (0, 2, 6):
        cfg = LogDetConfig(kind="roulette", n_exact_terms=m, eval_n_exact_terms=m, probe="rademacher")
        spreads.append(roulette_means("residual", cfg, draws=400, batch=4, seed=23).var().item())
    assert spreads[0] > spreads[1] > spreads[2]


# --- Neumann gradient -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("series", ["residual", "monotone"])
def test_neumann_gradient_is_unbiased_and_value_is_a_logdet(series: str) -> None:
    g = lipschitz_net()
    params = list(g.parameters())
    x0 = X0.clone().requires_grad_(True)
    exact = exact_value(series, jacobian_of(g, x0, create_graph=True))
    exact_grads = torch.autograd.grad(exact, [x0, *params], materialize_grads=True)
    cfg = LogDetConfig(kind="roulette", dist="geometric", n_exact_terms=0, neumann_grad=True)
    est = PowerSeriesLogDet(SERIES[series], cfg, generator=torch.Generator().manual_seed(29))
    flat_grads, values = [], []
    for _ in range(500):
        _, logdet = est(g, x0.expand(8, DIM), training=True)
        grads = torch.autograd.grad(logdet.mean(), [x0, *params], materialize_grads=True)
        flat_grads.append(torch.cat([gr.reshape(-1) for gr in grads]))
        values.append(logdet.detach().mean())
    samples = torch.stack(flat_grads)
    target = torch.cat([gr.reshape(-1) for gr in exact_grads])
    se = samples.std(dim=0) / math.sqrt(len(samples))
    assert ((samples.mean(dim=0) - target).abs() < 4 * se + 1e-12).all()
    assert (se < 0.1 * target.abs().max()).all()
    vals = torch.stack(values)
    assert abs(vals.mean().item() - exact.item()) < 4 * vals.std().item() / math.sqrt(len(vals))


def test_neumann_value_equals_basic_estimate_with_same_seed() -> None:
    g = lipschitz_net()
    x = X0.expand(6, DIM).clone().requires_grad_(True)
    outs = []
    for neumann in (False, True):
        cfg = LogDetConfig(kind="roulette", n_exact_terms=1, neumann_grad=neumann)
        est = PowerSeriesLogDet(RESIDUAL_SERIES, cfg, generator=torch.Generator().manual_seed(31))
        outs.append(est(g, x, training=True)[1])
    assert torch.allclose(outs[0], outs[1], atol=1e-13, rtol=0)
    assert outs[1].requires_grad


# --- memory-efficient backward ------------------------------------------------------------------------------------


def gradients(cfg: LogDetConfig, upstream: Tensor | None = None) -> list[Tensor]:
    g = lipschitz_net()
    params = tuple(g.parameters())
    x = (X0 + 0.2 * torch.randn(5, DIM, generator=torch.Generator().manual_seed(3), dtype=DTYPE)).requires_grad_(True)
    est = PowerSeriesLogDet(RESIDUAL_SERIES, cfg, generator=torch.Generator().manual_seed(37))
    gx, logdet = est(g, x, training=True, params=params)
    weights = torch.full((5,), 0.2, dtype=DTYPE) if upstream is None else upstream
    loss = (weights * logdet).sum() + (gx * torch.linspace(-1, 1, DIM, dtype=DTYPE)).sum()
    return list(torch.autograd.grad(loss, [x, *params]))


@pytest.mark.parametrize("neumann", [False, True])
def test_memory_efficient_backward_matches_plain_path(neumann: bool) -> None:
    plain = gradients(LogDetConfig(n_exact_terms=3, neumann_grad=neumann))
    efficient = gradients(LogDetConfig(n_exact_terms=3, neumann_grad=neumann, memory_efficient=True))
    for a, b in zip(plain, efficient):
        assert torch.allclose(a, b, atol=1e-10, rtol=0)
        assert a.abs().max() > 1e-3


def test_memory_efficient_refuses_unequal_upstream_weights() -> None:
    cfg = LogDetConfig(memory_efficient=True)
    with pytest.raises(UnequalUpstreamGradientError, match="equally weighted batch mean"):
        gradients(cfg, upstream=torch.linspace(0.1, 0.5, 5, dtype=DTYPE))
    assert issubclass(UnequalUpstreamGradientError, RuntimeError)


def test_memory_efficient_refuses_missing_params() -> None:
    g = lipschitz_net()
    est = PowerSeriesLogDet(RESIDUAL_SERIES, LogDetConfig(memory_efficient=True))
    with pytest.raises(ValueError, match="params="):
        est(g, X0.expand(2, DIM).clone().requires_grad_(True), training=True)


# --- exact kind -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("series", ["residual", "monotone"])
def test_exact_kind_equals_brute_force(series: str) -> None:
    g = lipschitz_net(lip=0.95)
    x = (0.5 * torch.randn(4, DIM, generator=torch.Generator().manual_seed(41), dtype=DTYPE)).requires_grad_(True)
    est = PowerSeriesLogDet(SERIES[series], LogDetConfig(kind="exact"))
    _, logdet = est(g, x, training=True)
    jacs = torch.stack([torch.func.jacrev(lambda z: g(z[None])[0])(xi) for xi in x])
    brute = exact_value(series, jacs)
    assert torch.allclose(logdet, brute, atol=1e-13)
    grads = torch.autograd.grad(logdet.sum(), [x, *g.parameters()], materialize_grads=True)
    brute_grads = torch.autograd.grad(brute.sum(), [x, *g.parameters()], materialize_grads=True)
    for a, b in zip(grads, brute_grads):
        assert torch.allclose(a, b, atol=1e-12)
    assert est.logdet_kind == "exact"


def test_exact_kind_refuses_large_dimension_and_unknown_series() -> None:
    est = PowerSeriesLogDet(RESIDUAL_SERIES, LogDetConfig(kind="exact"))
    with pytest.raises(ValueError, match="at most 1024"):
        est(lambda z: 0.5 * z, torch.zeros(1, 1025, dtype=DTYPE), training=False)
    with pytest.raises(ValueError, match="exact map"):
        PowerSeriesLogDet(SeriesKind("custom", lambda k: 1.0 / k), LogDetConfig(kind="exact"))
    assert PowerSeriesLogDet(monotone_coefficient, LogDetConfig()).series is MONOTONE_SERIES


# --- graphs, budgets, config ----------------------------------------------------------------------------------------


def test_evaluation_has_no_graph_and_uses_the_eval_budget() -> None:
    g = lipschitz_net()
    x = X0.expand(3, DIM).clone().requires_grad_(True)
    est = PowerSeriesLogDet(RESIDUAL_SERIES, LogDetConfig(eval_n_exact_terms=20), generator=torch.Generator())
    gx, logdet = est(g, x, training=False)
    assert not logdet.requires_grad and gx.requires_grad  # g(x) keeps the caller's graph, the estimate has none
    assert est.last_n_terms >= 21
    with torch.no_grad():
        gx, logdet = est(g, x, training=True)
    assert not gx.requires_grad and not logdet.requires_grad
    assert est.last_n_terms <= 2 + 60


def test_same_seed_same_estimate() -> None:
    g = lipschitz_net()
    x = X0.expand(4, DIM)
    outs = [
        PowerSeriesLogDet(RESIDUAL_SERIES, LogDetConfig(), generator=torch.Generator().manual_seed(7))(
            g, x, training=False
        )[1]
        for _ in range(2)
    ]
    assert torch.equal(outs[0], outs[1])


def test_config_validation_and_updates() -> None:
    cfg = LogDetConfig()
    assert cfg.validate() is cfg and cfg.logdet_kind == "unbiased"
    assert LogDetConfig(kind="exact").logdet_kind == "exact"
    updated = cfg.updated(n_exact_terms=10, dist=None)
    assert updated.n_exact_terms == 10 and updated.dist == "geometric" and cfg.n_exact_terms == 2
    bad = [
        ({"kind": "brute"}, "estimator.kind: 'brute' is not one of: exact, truncated, roulette"),
        ({"geom_p": 1.5}, "estimator.geom_p"),
        ({"n_terms": 0}, "estimator.n_terms"),
        ({"poisson_lambda": 0.0}, "estimator.poisson_lambda"),
        ({"probe": "uniform"}, "estimator.probe"),
        ({"n_probes": 0}, "estimator.n_probes"),
        ({"n_exact_terms": -1}, "estimator.n_exact_terms"),
        ({"neumann_grad": "yes"}, "estimator.neumann_grad"),
    ]
    for overrides, message in bad:
        with pytest.raises(ConfigError, match=re.escape(message)) as info:
            cfg.updated(**overrides)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"estimator\.n_sample"):
        cfg.updated(n_sample=3)


# --- the two routes to vᵀJ^k ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ["basic", "neumann"])
@pytest.mark.parametrize("series", ["residual", "monotone"])
def test_explicit_jacobian_route_equals_successive_vjps(estimator: str, series: str) -> None:
    """The explicit-J route (taken when D ≤ n) gives the estimate and the gradients of the successive-VJP route."""
    from nflab.flows.logdet import hutchinson_series, neumann_series
    from nflab.flows.logdet.powers import JacobianPowers

    g = lipschitz_net()
    params = tuple(g.parameters())
    gen = torch.Generator().manual_seed(41)
    x0 = X0 + 0.2 * torch.randn(7, DIM, generator=gen, dtype=DTYPE)
    cfg = LogDetConfig(kind="roulette", n_exact_terms=DIM + 1, probe="rademacher", n_probes=2)
    terms = sample_terms(cfg, training=True, generator=gen)
    probes = [sample_probe(x0, "rademacher", gen) for _ in range(2)]
    coefficient = SERIES[series].coefficient
    results = {}
    for route in ("vjp", "explicit"):
        x = x0.clone().requires_grad_(True)
        gx = g(x)
        if estimator == "basic":
            logdet = hutchinson_series(gx, x, probes, coefficient, terms, create_graph=True, route=route)
        else:
            logdet = neumann_series(gx, x, probes, coefficient, terms, route=route)
        weights = torch.linspace(0.5, 1.5, 7, dtype=DTYPE)
        grads = torch.autograd.grad((weights * logdet).sum(), [x, *params[:-1]])  # the last bias is not in J
        results[route] = [logdet.detach(), *grads]
    assert results["vjp"][0].abs().min() > 1e-3  # a real estimate, not zeros
    for a, b in zip(results["vjp"], results["explicit"], strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
    x = x0.clone().requires_grad_(True)
    assert JacobianPowers(g(x), x, DIM, create_graph=False).explicit  # D ≤ n: auto takes the explicit J
    assert not JacobianPowers(g(x), x, DIM - 1, create_graph=False).explicit
    with pytest.raises(ValueError, match="route: 'fast' is not one of"):
        JacobianPowers(g(x), x, DIM, create_graph=False, route="fast")  # type: ignore[arg-type]
