"""Variational dequantization and padding wrappers, their registry options and the E7 condition number (float64).

The dequantizer's bound is held against log P(k) of the flow by Gauss–Legendre quadrature over each bin; padding
against closed forms of a diagonal-scaling inner flow, whose joint and marginal densities are Gaussian.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

import nflab.flows as F
from nflab.flows.augment import (
    AugmentConfig,
    DequantizedFlow,
    PaddedFlow,
    UniformDequantizer,
    VariationalDequantizer,
    jacobian_condition_number,
)
from nflab.flows.data import uniform_dequantize
from nflab.flows.layers import DiagonalScaling, LogitTransform, Shift
from nflab.flows.transform import Compose

DT = torch.float64
N_BINS = 4


def _perturb(module: torch.nn.Module, gen: torch.Generator, scale: float) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _pixel_flow(gen: torch.Generator) -> F.Flow:
    """A non-factorising density on (0, 1)²: logit (α = 0, onto R²), then two perturbed affine couplings."""
    couplings = F.build("realnvp", (2,), couplings=2, hidden=(16,)).transform.transforms
    flow = F.Flow(Compose(LogitTransform(0.0), *couplings), (2,)).to(DT)
    _perturb(flow, gen, 0.1)
    return flow.requires_grad_(False)


def _all_bins() -> torch.Tensor:
    levels = torch.arange(N_BINS, dtype=DT)
    return torch.cartesian_prod(levels, levels)  # [16, 2]


def _log_bin_mass(flow: F.Flow, k: torch.Tensor, nodes: int = 40) -> torch.Tensor:
    """log P(k) = log ∫_bin p(x) dx by a tensor-product Gauss–Legendre rule over each of the n^-2 cells."""
    t, w = np.polynomial.legendre.leggauss(nodes)
    t = torch.tensor((t + 1) / 2, dtype=DT)
    w = torch.tensor(w / 2, dtype=DT)
    u = torch.cartesian_prod(t, t)
    log_w = torch.log(torch.cartesian_prod(w, w).prod(1))
    out = []
    for ki in k:
        x = (ki + u) / N_BINS
        out.append(torch.logsumexp(flow.log_prob(x) + log_w, 0) - 2 * math.log(N_BINS))
    return torch.stack(out)


def _dequantizer(gen: torch.Generator) -> VariationalDequantizer:
    deq = VariationalDequantizer((2,), N_BINS, blocks=2, hidden=(16,)).to(DT)
    _perturb(deq, gen, 0.1)
    return deq


def test_dequantizer_density_is_normalised_and_consistent() -> None:
    gen = torch.Generator().manual_seed(0)
    deq = _dequantizer(gen)
    k = _all_bins()
    with torch.no_grad():
        u, log_q = deq.sample(k.repeat_interleave(50, 0), generator=gen)
        assert ((u > 0) & (u < 1)).all()
        torch.testing.assert_close(log_q, deq.log_prob(u, k.repeat_interleave(50, 0)))  # sample and inverse agree
        t, w = np.polynomial.legendre.leggauss(80)
        grid = torch.cartesian_prod(torch.tensor((t + 1) / 2, dtype=DT), torch.tensor((t + 1) / 2, dtype=DT))
        weights = torch.cartesian_prod(torch.tensor(w / 2, dtype=DT), torch.tensor(w / 2, dtype=DT)).prod(1)
        for ki in k[[0, 5, 15]]:
            mass = (deq.log_prob(grid, ki.expand(len(grid), 2)).exp() * weights).sum()
            assert abs(mass.item() - 1) < 2e-3


def test_variational_bound_never_beats_the_bin_mass_and_trains() -> None:
    gen = torch.Generator().manual_seed(1)
    flow = _pixel_flow(gen)
    k = _all_bins()
    log_mass = _log_bin_mass(flow, k)
    torch.testing.assert_close(torch.logsumexp(log_mass, 0), torch.zeros((), dtype=DT), rtol=0, atol=1e-4)
    model = DequantizedFlow(flow, _dequantizer(gen), n_bins=N_BINS, num_samples=256)
    x = (k + 0.5) / N_BINS  # any point of the bin: only k = ⌊n·x⌋ is used
    offset = 2 * math.log(N_BINS)  # the bound is on the uniform-dequantization scale: log P ≥ value − D·log n

    def elbo(n_samples: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
        model.train()
        with torch.no_grad():
            draws = torch.stack([model.log_prob(x, generator=gen) for _ in range(n_samples)]) - offset
        return draws.mean(0), draws.std(0) / math.sqrt(n_samples)

    before, se = elbo()
    assert (before <= log_mass + 4 * se).all(), (before - log_mass).max()
    assert (log_mass - before).mean() > 0.02  # an untrained q leaves a visible gap
    with torch.no_grad():  # the value is log p((k + u)/n) − log q(u | k) for the u that q draws
        u, _ = model.dequantizer.sample(k, generator=torch.Generator().manual_seed(9))
        by_hand = flow.log_prob((k + u) / N_BINS) - model.dequantizer.log_prob(u, k)
        torch.testing.assert_close(model.log_prob(x, generator=torch.Generator().manual_seed(9)), by_hand)
        model.eval()  # K = 256 importance samples: tighter on average (weights are heavy-tailed: compare means)
        iwae = model.log_prob(x, generator=gen) - offset
    assert before.mean() + 0.01 < iwae.mean() < log_mass.mean() + 0.05
    optimizer = torch.optim.Adam(model.dequantizer.parameters(), lr=1e-2)
    model.train()
    for _ in range(60):
        loss = -model.log_prob(x.repeat(8, 1)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after, se = elbo()
    assert after.mean() > before.mean() + 0.01
    assert (after <= log_mass + 4 * se).all()


def test_uniform_q_reproduces_the_uniform_path() -> None:
    gen = torch.Generator().manual_seed(2)
    flow = _pixel_flow(gen)
    k = torch.randint(0, N_BINS, (50, 2), generator=gen)
    x_data = uniform_dequantize(k, N_BINS, generator=torch.Generator().manual_seed(7), dtype=DT)
    model = DequantizedFlow(flow, UniformDequantizer(), n_bins=N_BINS)
    shuffled_within_bins = (k.to(DT) + 0.25) / N_BINS
    got = model.log_prob(shuffled_within_bins, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(got, flow.log_prob(x_data), rtol=0, atol=0)


def test_variational_dequantization_through_build() -> None:
    gen = torch.Generator().manual_seed(3)
    flow = F.build("realnvp", (1, 4, 4), preset="small", dequantization="variational", dequantization_bins=17,
                   dequantization_blocks=2, dequantization_hidden=[8], dequantization_samples=3).to(DT)  # fmt: skip
    assert isinstance(flow, DequantizedFlow) and isinstance(flow, F.Flow) and flow.n_bins == 17
    assert flow.shape == (1, 4, 4) and flow.logdet_kind == "exact" and flow.has_exact_log_prob
    k = torch.randint(0, 17, (5, 1, 4, 4), generator=gen)
    x = uniform_dequantize(k, 17, generator=gen, dtype=DT)
    _perturb(flow, gen, 0.02)
    lp = flow.log_prob(x)
    assert lp.shape == (5,) and torch.isfinite(lp).all()
    flow.zero_grad()
    (-lp.mean()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in flow.dequantizer.parameters())
    flow.eval()
    a = flow.log_prob(x, generator=torch.Generator().manual_seed(0))
    b = flow.log_prob(x, num_dequantization_samples=3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)
    assert flow.sample(4, generator=gen).shape == (4, 1, 4, 4)
    z, _ = flow(x)
    torch.testing.assert_close(flow.inverse(z), x)
    keys = set(flow.state_dict())  # the inner flow's keys under transform., then the dequantizer's
    assert {f"transform.{k}" for k in F.build("realnvp", (1, 4, 4), preset="small").state_dict()} < keys
    assert all(k.startswith(("transform.", "dequantizer.")) for k in keys)


# ----------------------------------------------------------------------------------------------- padding


def _scaling_flow(log_scale: list[float], shape: tuple[int, ...] = (3,)) -> F.Flow:
    layer = DiagonalScaling(shape)
    with torch.no_grad():
        layer.log_scale.copy_(torch.tensor(log_scale, dtype=DT).view(shape))
    return F.Flow(layer, shape).to(DT)


def _normal_log_pdf(v: torch.Tensor, std: float | torch.Tensor) -> torch.Tensor:
    std = torch.as_tensor(std, dtype=DT)
    return -0.5 * (v / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)


def test_padding_accounting_hand_computed() -> None:
    """Inner z = x ⊙ e^s on (x₁, x₂, ε): p(x, ε) = Π N(x_i; 0, e^{−2s_i}) · N(ε; 0, e^{−2s₃}) in closed form."""
    s = [0.3, -0.2, 0.7]
    tau = math.exp(-s[2])  # the inner model's marginal std of the padded coordinate
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=DT)
    log_px = _normal_log_pdf(x[:, 0], math.exp(-s[0])) + _normal_log_pdf(x[:, 1], math.exp(-s[1]))

    zero = PaddedFlow(_scaling_flow(s), (2,), padding=1, kind="zero")
    torch.testing.assert_close(zero.log_prob(x), log_px + _normal_log_pdf(torch.zeros(6, dtype=DT), tau))

    std = 0.4
    gauss = PaddedFlow(_scaling_flow(s), (2,), padding=1, kind="gaussian", std=std)
    eps = std * torch.randn((6, 1), generator=torch.Generator().manual_seed(5), dtype=DT)
    expected = log_px + _normal_log_pdf(eps[:, 0], tau) - _normal_log_pdf(eps[:, 0], std)
    torch.testing.assert_close(gauss.log_prob(x, generator=torch.Generator().manual_seed(5)), expected)
    # in expectation the ELBO is log p(x) − KL(N(0, σ²) ‖ N(0, τ²)) ...
    draws = torch.stack([gauss.log_prob(x) for _ in range(4000)])
    kl = math.log(tau / std) + std**2 / (2 * tau**2) - 0.5
    torch.testing.assert_close(draws.mean(0), log_px - kl, rtol=0, atol=4 * draws.std(0).max().item() / 60)
    # ... and exactly log p(x), whatever ε, when σ is the model's own marginal
    matched = PaddedFlow(_scaling_flow(s), (2,), padding=1, kind="gaussian", std=tau)
    torch.testing.assert_close(matched.log_prob(x), log_px)


@pytest.mark.parametrize("kind", ["zero", "gaussian"])
def test_evaluation_bounds_the_marginal_likelihood_not_the_joint(kind: str) -> None:
    """p(x) = ∫ p_flow(x, ε) dε in closed form for z = x ⊙ e^s; the padded coordinate is squeezed 20× (τ = e^{−3}),
    as zero padding learns to: q = N(0, 1) alone would miss it, the Laplace proposal does not."""
    s = [0.3, -0.2, 3.0]
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=DT)
    log_px = _normal_log_pdf(x[:, 0], math.exp(-s[0])) + _normal_log_pdf(x[:, 1], math.exp(-s[1]))
    flow = PaddedFlow(_scaling_flow(s), (2,), padding=1, kind=kind).eval()
    assert flow.likelihood_kind() == "bound" and flow.importance_samples == (100,)
    draws = torch.stack([flow.log_prob(x, generator=torch.Generator().manual_seed(i)) for i in range(200)])
    assert (draws - log_px).abs().max() < 0.05
    assert (draws.mean(0) <= log_px + 3 * draws.std(0) / math.sqrt(200)).all()  # a lower bound in expectation
    wide = flow.log_prob(x, num_padding_samples=100, generator=torch.Generator().manual_seed(0))
    flow.train()
    if kind == "zero":  # training: the joint density at ε = 0, which is not a likelihood of x (here far above it)
        assert flow.likelihood_kind() == "joint" and flow.importance_samples == ()
        joint = flow.log_prob(x)
        torch.testing.assert_close(joint, log_px + _normal_log_pdf(torch.zeros(6, dtype=DT), math.exp(-3.0)))
        assert (joint > log_px + 2).all()
    else:
        assert flow.likelihood_kind() == "bound" and flow.importance_samples == (1,)
    torch.testing.assert_close(wide, draws[0], rtol=0, atol=0.05)  # an explicit K works in either mode


def test_truncated_image_padding_noise_is_a_density_on_the_unit_interval() -> None:
    padded = PaddedFlow(F.Flow(Shift(0.0), (2, 1, 1)), (1, 1, 1), padding=1, kind="gaussian", std=0.3)
    grid = torch.linspace(0, 1, 20001, dtype=DT).view(-1, 1, 1, 1)
    density = padded.noise_log_prob(grid).exp()
    assert abs(torch.trapezoid(density, dx=1 / 20000).item() - 1) < 1e-6
    eps = padded.draw_noise(torch.zeros(40000, 1, 1, 1, dtype=DT), generator=torch.Generator().manual_seed(0))
    assert ((eps >= 0) & (eps <= 1)).all()
    mean = torch.trapezoid(density * grid.flatten(), dx=1 / 20000)
    assert abs(eps.mean().item() - mean.item()) < 0.005 and abs(eps.std().item() - 0.3) > 0.02  # truncated: σ shrinks


@pytest.mark.parametrize(
    ("shape", "family", "opts"),
    [((2,), "realnvp", {"preset": "small"}), ((1, 8, 8), "realnvp", {"preset": "small"})],
    ids=["vector", "image"],
)
@pytest.mark.parametrize("kind", ["zero", "gaussian"])
def test_padded_shapes_sampling_and_round_trip(shape: tuple, family: str, opts: dict, kind: str) -> None:
    gen = torch.Generator().manual_seed(4)
    flow = F.build(family, shape, padding=2, padding_kind=kind, **opts).to(DT)
    assert isinstance(flow, PaddedFlow) and flow.shape == shape
    assert flow.inner.shape == (shape[0] + 2, *shape[1:])
    x = (
        torch.randn(5, *shape, generator=gen, dtype=DT)
        if len(shape) == 1
        else torch.rand(5, *shape, generator=gen, dtype=DT)
    )
    flow.train()
    flow(x)  # data-dependent initialisation sees padded data
    _perturb(flow, gen, 0.02)
    flow.eval()
    z, logdet = flow(x, generator=torch.Generator().manual_seed(1))
    assert z.shape == (5, *flow.inner.shape) and logdet.shape == (5,)
    torch.testing.assert_close(flow.inverse(z), x)
    flow.train()  # the training objective: one ε per point (zero padding: ε = 0)
    lp = flow.log_prob(x, generator=torch.Generator().manual_seed(1))
    padded, log_q = flow.pad(x, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(lp, flow.inner.log_prob(padded) - log_q)
    if kind == "zero":
        assert (log_q == 0).all() and (padded[:, shape[0] :] == 0).all()
    flow.eval()  # the bound on log p(x): K importance samples per point
    bound = flow.log_prob(x, generator=torch.Generator().manual_seed(1))
    assert bound.shape == (5,) and torch.isfinite(bound).all()
    assert flow.likelihood_kind() == "bound" and flow.importance_samples == ((100,) if len(shape) == 1 else (10,))
    samples = flow.sample(7, generator=torch.Generator().manual_seed(2))
    assert samples.shape == (7, *shape) and torch.isfinite(samples).all()


def test_condition_number() -> None:
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=DT)
    scaling = PaddedFlow(_scaling_flow([math.log(2), math.log(0.5), 0.0]), (2,), padding=1, kind="zero")
    torch.testing.assert_close(jacobian_condition_number(scaling, x), torch.full((4,), 4.0, dtype=DT))
    gen = torch.Generator().manual_seed(1)
    flow = F.build("realnvp", (2,), preset="small", padding=1, padding_kind="gaussian").to(DT)
    _perturb(flow, gen, 0.1)
    cond = jacobian_condition_number(flow, x, generator=torch.Generator().manual_seed(3))
    padded, _ = flow.pad(x, generator=torch.Generator().manual_seed(3))
    for i in range(4):
        jac = torch.autograd.functional.jacobian(lambda v: flow.inner(v.unsqueeze(0))[0][0], padded[i])
        torch.testing.assert_close(cond[i], torch.linalg.cond(jac))
    assert (cond > 1).all()
    cif = F.build("cif", (2,), base="realnvp", preset="small")
    with pytest.raises(ValueError, match="no deterministic data → latent map"):
        jacobian_condition_number(cif, x.float())


# ----------------------------------------------------------------------------------------------- registry


def test_common_options_for_every_family() -> None:
    names = [f.name for f in dataclasses.fields(AugmentConfig)]
    for family in F.available():
        specs = F.options(family)
        assert list(specs)[-len(names) :] == names
    plain = F.resolve_config("realnvp", preset="small")
    assert type(plain) is type(F.resolve_config("realnvp"))  # defaults: the family's own config, nothing added
    assert F.resolve_config("realnvp", preset="small", padding=0, padding_kind="zero") == plain  # irrelevant: reset
    padded = F.resolve_config("realnvp", preset="small", padding=2, padding_kind="zero")
    flat = dataclasses.asdict(padded)
    assert flat["padding"] == 2 and flat["couplings"] == 6 and list(flat)[-len(names) :] == names
    assert flat["dequantization_bins"] == 256  # unused dequantization options stay at their defaults
    rebuilt = F.build("realnvp", (2,), **flat)
    assert isinstance(rebuilt, PaddedFlow) and rebuilt.config == padded
    for opts, message in [
        ({"padding": -1}, "realnvp.padding: -1 is not an integer >= 0"),
        ({"padding": 1, "padding_kind": "uniform"}, "realnvp.padding_kind: 'uniform' is not one of: zero, gaussian"),
        ({"padding": 1, "padding_std": 0}, "realnvp.padding_std: 0 is not a number > 0 or null"),
        ({"dequantization": "learned"}, "realnvp.dequantization: 'learned' is not one of: uniform, variational"),
        ({"dequantization": "variational", "dequantization_bins": 1}, "realnvp.dequantization_bins: 1 is not"),
    ]:
        with pytest.raises(ValueError) as info:
            F.build("realnvp", (2,), **opts)
        assert message in str(info.value)


def test_wrappers_compose_with_cif() -> None:
    flow = F.build("cif", (2,), base="realnvp", preset="small", padding=1, dequantization="variational",
                   dequantization_bins=8)  # fmt: skip
    assert isinstance(flow, DequantizedFlow) and isinstance(flow.inner, PaddedFlow)
    assert flow.has_exact_log_prob is False and flow.likelihood_kind() == "bound"
    x = torch.rand(6, 2)
    flow.eval()
    a = flow.log_prob(x, num_importance_samples=4, generator=torch.Generator().manual_seed(0))
    b = flow.log_prob(x, num_importance_samples=4, generator=torch.Generator().manual_seed(0))
    assert a.shape == (6,) and torch.equal(a, b) and torch.isfinite(a).all()
    assert flow.sample(3).shape == (3, 2)


def test_catalog_e7_padding_pipeline() -> None:
    from nflab.pipelines import catalog_path, expand, load_pipeline

    specs = expand(load_pipeline(catalog_path("e7-padding")))
    variants = {(s.config["model"].get("padding", 0), s.config["model"].get("padding_kind")) for s in specs}
    assert variants == {(0, None), (2, "zero"), (2, "gaussian")}
    assert {s.config["model"]["family"] for s in specs} == {"realnvp"}
    datasets = {s.config["dataset"]["name"] for s in specs}
    assert len(specs) == 3 * 3 * len(datasets) and len(datasets) >= 2  # three seeds each
