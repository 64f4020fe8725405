"""CIF (continuously indexed flows) around a base family, and the 2gaussians target (float64).

The importance-weighted estimate is checked against the base flow (zero CIF nets: the estimate is the base's exact
log-likelihood), against the true log p(x) of a one-layer model by quadrature over u (IWAE_K ≤ log p, growing with
K towards it), and for sampling, gradients, state_dict I/O, the registry's pass-through of base options, and the
refusal of exact=True.
"""

from __future__ import annotations

import dataclasses
import io
import math
import pickle

import pytest
import torch

import nflab.flows as F
from nflab.flows.data import sample_toy
from nflab.flows.models.cif import CIFFlow, ContinuouslyIndexedAffine, NoExactLikelihoodError
from nflab.flows.transform import Compose, Transform

DT = torch.float64


def _perturb(params: list[torch.nn.Parameter], gen: torch.Generator, scale: float) -> None:
    with torch.no_grad():
        for p in params:
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _cif_layers(flow: torch.nn.Module) -> list[ContinuouslyIndexedAffine]:
    return [m for m in flow.modules() if isinstance(m, ContinuouslyIndexedAffine)]


def _cif_params(flow: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for layer in _cif_layers(flow) for p in layer.parameters()]


def _base_params(flow: torch.nn.Module) -> list[torch.nn.Parameter]:
    cif = {id(p) for p in _cif_params(flow)}
    return [p for p in flow.parameters() if id(p) not in cif]


def _strip(transform: Transform) -> Transform:
    """The base transform: the same modules with every CIF layer removed."""
    if type(transform) is not Compose:
        return transform
    return Compose(*[_strip(t) for t in transform.transforms if not isinstance(t, ContinuouslyIndexedAffine)])


def _data(shape: tuple[int, ...], n: int, gen: torch.Generator) -> torch.Tensor:
    if len(shape) == 1:
        return torch.randn(n, *shape, generator=gen, dtype=DT)
    return 0.05 + 0.9 * torch.rand(n, *shape, generator=gen, dtype=DT)


BASES = [
    ("realnvp", (2,), {"preset": "small"}, 6),
    ("maf", (5,), {"preset": "small"}, 5),  # 5 MADE layers; the 4 reversals have no parameters
    ("nice", (5,), {"preset": "small"}, 5),  # 4 couplings + the diagonal scaling
    ("realnvp", (1, 8, 8), {"preset": "small"}, None),
]


@pytest.mark.parametrize(("base", "shape", "opts", "n_layers"), BASES, ids=lambda v: str(v))
def test_zero_nets_give_the_base_log_likelihood_exactly(base: str, shape: tuple, opts: dict, n_layers: int) -> None:
    """s = t = 0 and p(u|z) = q(u|x′) = N(0, I): log w is the base's log p(x) for every u, so IWAE_K equals it."""
    gen = torch.Generator().manual_seed(0)
    flow = F.build("cif", shape, base=base, **opts).to(DT)
    assert isinstance(flow, CIFFlow) and flow.config.base == base
    if n_layers is not None:
        assert len(_cif_layers(flow)) == n_layers
    _perturb(_base_params(flow), gen, 0.1)  # the base is not the identity; the CIF nets stay zero
    base_flow = F.Flow(_strip(flow.transform), shape)
    x = _data(shape, 7, gen)
    expected = base_flow.log_prob(x)
    torch.testing.assert_close(expected, base_flow.log_prob(x, exact=True))
    flow.eval()
    for k in (1, 5):
        got = flow.log_prob(x, num_importance_samples=k, generator=torch.Generator().manual_seed(k))
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    with torch.no_grad():  # with s = t = 0 every CIF layer is the identity, whatever u is drawn
        torch.testing.assert_close(flow.inverse(flow(x)[0]), x)
    _perturb(_cif_params(flow), gen, 0.1)  # now p ≠ q: the estimate moves away from the base's value
    moved = flow.log_prob(x, num_importance_samples=1, generator=torch.Generator().manual_seed(1))
    assert (moved - expected).abs().min() > 1e-4


def _one_layer_model(gen: torch.Generator) -> CIFFlow:
    flow = F.build("cif", (2,), base="realnvp", couplings=1, hidden=(8,), cif_hidden=(6,)).to(DT)
    assert len(_cif_layers(flow)) == 1
    _perturb(list(flow.parameters()), gen, 0.25)
    return flow


def _log_p_by_quadrature(flow: CIFFlow, x: torch.Tensor) -> torch.Tensor:
    """log p(x) = log ∫ N(z) p(u|z) e^{Σ s(u)} |det J_f(x)| du with z = (f(x) + t(u)) e^{s(u)}; u is 1-D."""
    coupling, layer = flow.transform.transforms
    y, logdet_f = coupling(x)
    grid = torch.linspace(-40.0, 40.0, 16001, dtype=DT)
    step = grid[1] - grid[0]
    out = []
    for yi, ldi in zip(y, logdet_f):
        ys = yi.expand(len(grid), 2)
        u = grid.unsqueeze(1)
        z, logdet_s = layer.affine(ys, u)
        log_integrand = F.standard_normal_log_prob(z) + layer.prior.log_prob(u, z) + logdet_s + ldi
        assert log_integrand[[0, -1]].max() < log_integrand.max() - 40  # the grid holds all of the mass
        out.append(torch.logsumexp(log_integrand, 0) + torch.log(step))
    return torch.stack(out)


def test_iwae_is_a_lower_bound_that_grows_with_k() -> None:
    gen = torch.Generator().manual_seed(1)
    flow = _one_layer_model(gen)
    flow.eval()
    x = torch.randn(12, 2, generator=gen, dtype=DT)
    with torch.no_grad():
        log_p = _log_p_by_quadrature(flow, x)
        means, errors = {}, {}
        for k in (1, 10, 100, 2000):
            gens = [torch.Generator().manual_seed(s) for s in range(20)]
            runs = torch.stack([flow.log_prob(x, num_importance_samples=k, generator=g) for g in gens])
            means[k], errors[k] = runs.mean(0), runs.std(0) / math.sqrt(len(gens))
    gap_1 = (log_p - means[1]).mean()
    assert gap_1 > 0.05, "the perturbed model should have a visible ELBO gap"
    assert means[1].mean() < means[10].mean() < means[100].mean()  # E[IWAE_K] grows with K ...
    for k in (1, 10, 100, 2000):
        assert (means[k] <= log_p + 4 * errors[k] + 1e-3).all(), k  # ... stays below log p(x) ...
    assert ((means[2000] - log_p).abs() <= 4 * errors[2000] + 0.01).all()  # ... and reaches it
    assert (log_p - means[2000]).mean() < 0.05 * gap_1


def test_default_k_follows_the_mode_and_forward_is_one_sample() -> None:
    gen = torch.Generator().manual_seed(2)
    flow = _one_layer_model(gen)
    x = torch.randn(5, 2, generator=gen, dtype=DT)
    assert (flow.num_importance_samples, flow.train_importance_samples) == (100, 1)
    flow.train()
    elbo = flow.log_prob(x, generator=torch.Generator().manual_seed(0))
    z, logdet = flow(x, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(elbo, F.standard_normal_log_prob(z) + logdet)  # K = 1 in training mode
    flow.eval()
    iwae = flow.log_prob(x, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        iwae, flow.log_prob(x, num_importance_samples=100, generator=torch.Generator().manual_seed(0))
    )
    images = F.build("cif", (1, 4, 4), base="realnvp", preset="small", train_importance_samples=2)
    assert (images.num_importance_samples, images.train_importance_samples) == (10, 2)
    with pytest.raises(ValueError, match=r"cif.num_importance_samples: 0 is not a positive integer"):
        flow.log_prob(x, num_importance_samples=0)


@pytest.mark.parametrize("shape", [(2,), (1, 8, 8)], ids=str)
def test_sampling_gradients_and_state_dict(shape: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(3)
    flow = F.build("cif", shape, base="realnvp", preset="small").to(DT)
    flow.train()
    flow(_data(shape, 64, gen))
    _perturb(list(flow.parameters()), gen, 0.05)
    samples = flow.sample(9, generator=torch.Generator().manual_seed(4))
    assert samples.shape == (9, *shape) and samples.dtype == DT and torch.isfinite(samples).all()
    assert torch.equal(samples, flow.sample(9, generator=torch.Generator().manual_seed(4)))
    assert not torch.equal(samples, flow.sample(9, generator=torch.Generator().manual_seed(5)))

    x = _data(shape, 6, gen)
    flow.zero_grad()
    (-flow.log_prob(x).mean()).backward()
    missing = [n for n, p in flow.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, f"parameters without gradient: {missing}"

    buffer = io.BytesIO()
    torch.save(flow.state_dict(), buffer)
    buffer.seek(0)
    clone = F.build("cif", shape, base="realnvp", preset="small").to(DT)
    clone.load_state_dict(torch.load(buffer))
    flow.eval()
    clone.eval()
    with torch.no_grad():
        a = flow.log_prob(x, generator=torch.Generator().manual_seed(6))
        b = clone.log_prob(x, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_exact_is_refused() -> None:
    flow = F.build("cif", (2,), base="nice", preset="small")
    assert flow.has_exact_log_prob is False and flow.likelihood_kind() == "bound"
    x = torch.randn(3, 2)
    with pytest.raises(NoExactLikelihoodError, match=r"cif: exact=True is not available") as info:
        flow.log_prob(x, exact=True)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match="no closed form"):
        flow.exact_logdet(x)


def test_registry_passes_base_options_through() -> None:
    cfg = F.resolve_config("cif", base="realnvp", preset="small", couplings=3, u_dim=2)
    # the preset applies to the base (realnvp's small) and to CIF's own small (the 2-D reference widths)
    assert (cfg.base, cfg.couplings, cfg.hidden, cfg.cif_hidden, cfg.u_dim) == ("realnvp", 3, (64, 64), (10, 10), 2)
    assert isinstance(cfg, F.resolve_config("realnvp").__class__)  # the base's builder gets its own config type
    flat = dataclasses.asdict(cfg)
    assert list(flat)[:5] == ["base", "u_dim", "cif_hidden", "num_importance_samples", "train_importance_samples"]
    again = F.build("cif", (2,), **flat)  # a pipeline's resolved dict builds the same model
    assert again.config == cfg and pickle.loads(pickle.dumps(cfg)) == cfg
    assert "couplings" in F.options("cif", base="realnvp") and "couplings" not in F.options("cif")
    cases = [
        ({"couplings": "x"}, "realnvp.couplings: 'x' is not an integer"),
        ({"scale": "cubic"}, "realnvp.scale: 'cubic' is not one of: tanh, exp, sigmoid"),
        ({"bogus": 1}, "cif.bogus: 'bogus' is not an option of cif or of its base realnvp; allowed: base, u_dim"),
        ({"u_dim": 0}, "cif.u_dim: 0 is not an integer >= 1"),
        ({"preset": "huge"}, "cif.preset: 'huge' is not one of: images, small"),
        ({"base": "cif"}, "cif.base: 'cif' is not one of: "),
        ({"padding": -2}, "cif.padding: -2 is not an integer >= 0"),
    ]
    for opts, fragment in cases:
        with pytest.raises(ValueError) as info:
            F.build("cif", (2,), **({"base": "realnvp"} | opts))
        assert fragment in str(info.value) and "\n" not in str(info.value)


def test_default_base_is_resflow_when_registered() -> None:
    if "resflow" in F.available():
        assert F.resolve_config("cif").base == "resflow"
    else:
        with pytest.raises(ValueError, match=r"cif.base: 'resflow' is not one of: .* the default base of cif"):
            F.resolve_config("cif")


@pytest.mark.skipif("resflow" not in F.available(), reason="the resflow family is not registered")
def test_cif_around_resflow() -> None:
    flow = F.build("cif", (2,), preset="small").to(DT)
    assert flow.config.base == "resflow" and len(_cif_layers(flow)) >= 1
    x = torch.randn(4, 2, dtype=DT)
    flow.eval()
    lp = flow.log_prob(x, num_importance_samples=3, generator=torch.Generator().manual_seed(0))
    assert lp.shape == (4,) and torch.isfinite(lp).all()
    assert flow.sample(5, generator=torch.Generator().manual_seed(0)).shape == (5, 2)


def test_two_gaussians_target() -> None:
    x = sample_toy("2gaussians", 20_000, generator=torch.Generator().manual_seed(0), dtype=DT)
    upper = x.sum(1) > 0
    assert abs(upper.double().mean().item() - 0.5) < 0.01
    for mask, centre in ((upper, 2.0), (~upper, -2.0)):
        torch.testing.assert_close(x[mask].mean(0), torch.full((2,), centre, dtype=DT), rtol=0, atol=0.02)
        torch.testing.assert_close(x[mask].std(0), torch.full((2,), 0.5, dtype=DT), rtol=0.03, atol=0)
    assert (x.sum(1).abs() > 1.0).double().mean() > 0.999  # practically no mass between the modes
    centres = torch.tensor([[2.0, 2.0], [-2.0, -2.0]], dtype=DT)
    log_pdf = torch.logsumexp(
        torch.stack([F.standard_normal_log_prob((x - c) / 0.5) - 2 * math.log(0.5) for c in centres]), 0
    ) - math.log(2)
    assert abs(-log_pdf.mean().item() - (1 + math.log(2 * math.pi * 0.25) + math.log(2))) < 0.03


def test_catalog_cif_toy_pipelines() -> None:
    """cif-toy: the reference's 2-D setting (a Residual Flow base of 10 blocks [128]*4, CIF nets (10, 10), u of 1,
    100 test importance samples, batch 1000); cif-toy-quick: the same parts around the small Residual Flow."""
    from nflab.pipelines import catalog_path, expand, load_pipeline

    for name, blocks, hidden in (("cif-toy", [10], [128, 128, 128, 128]), ("cif-toy-quick", [4], [32, 32])):
        specs = expand(load_pipeline(catalog_path(name)))
        assert {s.config["model"]["family"] for s in specs} == {"cif", "resflow"}
        assert {s.config["dataset"]["name"] for s in specs} == {"2gaussians", "8gaussians", "rings"}
        cif = next(s.config["model"] for s in specs if s.config["model"]["family"] == "cif")
        plain = next(s.config["model"] for s in specs if s.config["model"]["family"] == "resflow")
        assert cif["base"] == "resflow" and cif["u_dim"] == 1 and cif["num_importance_samples"] == 100
        assert cif["train_importance_samples"] == 1
        assert {k: cif[k] for k in plain if k != "family"} == {k: v for k, v in plain.items() if k != "family"}
        assert plain["blocks"] == blocks and plain["hidden"] == hidden and plain["coeff"] == 0.9
        assert plain["estimator"] == "roulette" and plain["geom_p"] == 0.5 and plain["n_exact_terms"] == 2
        for spec in specs:
            assert spec.config["eval"]["exact"] == "auto" and spec.config["dataset"]["validation_samples"] == 1000
    flow = F.build("cif", (2,), **{k: v for k, v in cif.items() if k != "family" and v is not None})
    assert flow.eval().importance_samples == (100,) and flow.likelihood_kind(exact=True) == "bound"
    full = expand(load_pipeline(catalog_path("cif-toy")))
    assert all(s.config["train"]["batch_size"] == 1000 for s in full)
