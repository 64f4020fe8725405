"""FFJORD (continuous normalizing flows), float64: closed forms of linear ODEs, brute-force Jacobians, Hutchinson
unbiasedness, the fixed probe of one solve, NFE bookkeeping, regularisers, solver failures and the published config.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import Tensor, nn

import nflab.flows as F
from nflab.flows.layers import LogitTransform
from nflab.flows.layers import cnf as cnf_module
from nflab.flows.layers.cnf import CNF, ODESolveError, ODESolverOptions, set_noise_generator
from nflab.flows.layers.divergence import exact_divergence, hutchinson_divergence
from nflab.flows.layers.odefunc import (
    ConcatConv2d,
    ConcatLinear,
    ConcatSquashConv2d,
    ConcatSquashLinear,
    SquashConv2d,
    SquashLinear,
    dynamics_net,
)
from nflab.flows.logdet.probes import sample_probe

DT = torch.float64
TIGHT = ODESolverOptions(atol=1e-10, rtol=1e-10)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _linear_cnf(a: Tensor, end_time: float, **kwargs) -> CNF:
    """A CNF whose dynamics are exactly f(t, z) = A z (one concat layer with zero time column and bias)."""
    net = dynamics_net((a.shape[0],), (), "concat").double()
    with torch.no_grad():
        net.layers[0].linear.weight.copy_(torch.cat([torch.zeros(a.shape[0], 1, dtype=DT), a], dim=1))
        net.layers[0].linear.bias.zero_()
    kwargs.setdefault("solver", TIGHT)
    return CNF(net, end_time=end_time, **kwargs).double()


def _perturbed(flow: nn.Module, scale: float, seed: int) -> nn.Module:
    g = _gen(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return flow


def _mean_within(estimates: Tensor, target: Tensor, n_se: float = 4.0) -> None:
    """Every column mean of ``estimates`` [n, k] lies within n_se standard errors of ``target`` [k]."""
    mean, se = estimates.mean(dim=0), estimates.std(dim=0) / math.sqrt(estimates.shape[0])
    assert ((mean - target).abs() <= n_se * se).all(), f"mean {mean} vs {target} (s.e. {se})"


# ------------------------------------------------------------------------------------------ dynamics layers
def test_time_layers_match_their_formulas() -> None:
    """The gate and hyper-bias are folded into the weights; the layers must still compute the published maps."""
    g = _gen(0)
    t = torch.tensor(0.37, dtype=DT)
    x, img = torch.randn(5, 3, generator=g, dtype=DT), torch.randn(2, 3, 4, 4, generator=g, dtype=DT)
    tcol = t.reshape(1, 1)

    concat = ConcatLinear(3, 4).double()
    torch.testing.assert_close(concat(t, x), concat.linear(torch.cat([tcol.expand(5, 1), x], dim=1)))
    for cls, hyper in ((SquashLinear, False), (ConcatSquashLinear, True)):
        layer = _perturbed(cls(3, 4).double(), 0.3, 1)
        expected = layer.base(x) * torch.sigmoid(layer.gate(tcol)) + (layer.hyper_bias(tcol) if hyper else 0.0)
        torch.testing.assert_close(layer(t, x), expected)

    cconv = ConcatConv2d(3, 5).double()
    torch.testing.assert_close(cconv(t, img), cconv.conv(torch.cat([torch.full_like(img[:, :1], 0.37), img], 1)))
    for cls, hyper in ((SquashConv2d, False), (ConcatSquashConv2d, True)):
        layer = _perturbed(cls(3, 5).double(), 0.3, 2)
        expected = layer.base(img) * torch.sigmoid(layer.gate(tcol)).reshape(1, 5, 1, 1)
        if hyper:
            expected = expected + layer.hyper_bias(tcol).reshape(1, 5, 1, 1)
        torch.testing.assert_close(layer(t, img), expected)


# ------------------------------------------------------------------------------------------ linear ODE, exact
def test_linear_ode_matches_matrix_exponential_and_trace() -> None:
    a = 0.6 * torch.randn(3, 3, generator=_gen(1), dtype=DT)
    cnf = _linear_cnf(a, 0.7, divergence="brute_force")
    end_time = cnf.end_time.item()
    assert end_time == pytest.approx(0.7, rel=1e-7)
    x = torch.randn(8, 3, generator=_gen(2), dtype=DT)
    z, logdet = cnf(x)
    expected_z = x @ torch.linalg.matrix_exp(end_time * a).T
    torch.testing.assert_close(z, expected_z, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(logdet, torch.full((8,), end_time * a.trace().item(), dtype=DT), atol=1e-10, rtol=0)
    torch.testing.assert_close(cnf.inverse(z), x, atol=1e-8, rtol=1e-8)
    assert cnf.kind == "exact"


@pytest.mark.parametrize("noise", ["gaussian", "rademacher"])
def test_hutchinson_on_a_linear_ode_uses_one_probe_per_solve_and_is_unbiased(noise: str) -> None:
    """For f = Az the estimate is exactly T·εᵀAε with the ε of this call (drawn once, kept for every step);
    over many independent ε (one per sample) its mean is T·tr(A) within 4 standard errors."""
    a = 0.6 * torch.randn(3, 3, generator=_gen(3), dtype=DT)
    cnf = _linear_cnf(a, 0.7, divergence="hutchinson", noise=noise, solver=ODESolverOptions(atol=1e-8, rtol=1e-8))
    end_time = cnf.end_time.item()
    cnf.generator = _gen(11)
    x = torch.randn(4000, 3, generator=_gen(4), dtype=DT)
    _, logdet = cnf(x)
    eps = sample_probe(x, noise, _gen(11))  # the same draw
    per_sample = end_time * torch.einsum("bi,ij,bj->b", eps, a, eps)
    torch.testing.assert_close(logdet, per_sample, atol=1e-7, rtol=1e-7)
    _mean_within(logdet[:, None], torch.tensor([end_time * a.trace().item()], dtype=DT))
    assert cnf.kind == "unbiased"


# -------------------------------------------------------------------------------- nonlinear divergence, statistics
@pytest.mark.parametrize("noise", ["gaussian", "rademacher"])
def test_divergence_estimators_against_the_full_jacobian(noise: str) -> None:
    net = _perturbed(dynamics_net((3,), (16, 16), "concatsquash", "tanh").double(), 0.2, 5)
    t = torch.tensor(0.2, dtype=DT)
    points = torch.randn(4, 3, generator=_gen(6), dtype=DT)
    jac = torch.stack([torch.func.jacrev(lambda v: net(t, v[None])[0])(p) for p in points])  # brute force
    trace, frob = jac.diagonal(dim1=1, dim2=2).sum(-1), jac.pow(2).sum((1, 2))

    z = points.repeat(3000, 1).requires_grad_()
    f = net(t, z)
    div, fro = exact_divergence(f, z, frobenius=True)
    torch.testing.assert_close(div, trace.repeat(3000), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(fro, frob.repeat(3000), atol=1e-12, rtol=1e-12)

    est, est_fro = hutchinson_divergence(f, z, sample_probe(z, noise, _gen(7)), frobenius=True)
    assert not torch.allclose(est, div)  # a real estimate, not the exact value in disguise
    _mean_within(est.reshape(3000, 4), trace)
    _mean_within(est_fro.reshape(3000, 4), frob)


def test_hutchinson_log_det_of_a_nonlinear_cnf_is_unbiased() -> None:
    torch.manual_seed(0)
    exact = _perturbed(F.build("ffjord", (3,), hidden=(16, 16), atol=1e-7, rtol=1e-7).double(), 0.1, 8)
    estimated = F.build("ffjord", (3,), hidden=(16, 16), atol=1e-7, rtol=1e-7, estimator="hutchinson").double()
    estimated.load_state_dict(exact.state_dict())
    set_noise_generator(estimated, _gen(9))
    points = torch.randn(3, 3, generator=_gen(10), dtype=DT)
    with torch.no_grad():
        _, reference = exact(points)
        _, samples = estimated(points.repeat(2000, 1))
    assert samples.std() > 1e-3
    _mean_within(samples.reshape(2000, 3), reference)


def test_the_probe_is_fixed_for_every_evaluation_of_a_solve_including_the_adjoint(monkeypatch) -> None:
    seen: list[Tensor] = []
    original = cnf_module.hutchinson_divergence

    def recording(f: Tensor, z: Tensor, noise: Tensor, **kwargs):
        seen.append(noise.detach().clone())
        return original(f, z, noise, **kwargs)

    monkeypatch.setattr(cnf_module, "hutchinson_divergence", recording)
    flow = F.build("ffjord", (2,), preset="small", estimator="hutchinson").double()
    block = flow.transform.transforms[0]
    x = torch.randn(16, 2, generator=_gen(12), dtype=DT)
    (-flow.log_prob(x).mean()).backward()
    assert len(seen) == block.nfe_forward + block.nfe_backward and block.nfe_backward > 0
    assert all(torch.equal(s, seen[0]) for s in seen)
    first = seen[0]
    seen.clear()
    flow.log_prob(x)
    assert seen and all(torch.equal(s, seen[0]) for s in seen) and not torch.equal(seen[0], first)


# ---------------------------------------------------------------------------------------------- NFE and gradients
def test_nfe_is_counted_per_phase_and_reported_to_the_trainer() -> None:
    flow = F.build("ffjord", (2,), preset="small", blocks=2).double()
    x = torch.randn(32, 2, generator=_gen(13), dtype=DT)
    loss = -flow.log_prob(x).mean()
    blocks = list(flow.transform.transforms)
    forward = [b.nfe_forward for b in blocks]
    assert all(n > 0 for n in forward) and all(b.nfe_backward == 0 for b in blocks)
    loss.backward()
    assert [b.nfe_forward for b in blocks] == forward and all(b.nfe_backward > 0 for b in blocks)
    metrics = F.hooks.training_metrics(flow)
    assert metrics["nfe_forward"] == sum(forward)
    assert metrics["nfe_backward"] == sum(b.nfe_backward for b in blocks)
    assert metrics["integration_time"] == pytest.approx(2 * 0.5)
    with torch.no_grad():
        flow.inverse(torch.randn(4, 2, generator=_gen(14), dtype=DT))
    assert all(b.nfe_inverse > 0 for b in blocks) and F.hooks.training_metrics(flow) == metrics

    direct = F.build("ffjord", (2,), preset="small", adjoint=False).double()
    (-direct.log_prob(x).mean()).backward()
    assert direct.transform.transforms[0].nfe_forward > 0 and direct.transform.transforms[0].nfe_backward == 0


def test_adjoint_gradients_match_direct_backprop_including_the_end_time() -> None:
    opts = {"hidden": (16, 16), "blocks": 2, "atol": 1e-9, "rtol": 1e-9, "estimator": "hutchinson"}
    adjoint = _perturbed(F.build("ffjord", (3,), **opts).double(), 0.1, 15)
    direct = F.build("ffjord", (3,), adjoint=False, **opts).double()
    direct.load_state_dict(adjoint.state_dict())
    x = torch.randn(6, 3, generator=_gen(16), dtype=DT, requires_grad=True)
    grads = []
    for flow in (adjoint, direct):
        set_noise_generator(flow, _gen(17))
        grads.append(torch.autograd.grad(flow.log_prob(x).sum(), [x, *flow.parameters()]))
    names = ["x", *(n for n, _ in adjoint.named_parameters())]
    for name, ga, gd in zip(names, *grads):
        assert ga.abs().sum() > 0, name
        torch.testing.assert_close(ga, gd, atol=1e-6, rtol=1e-5, msg=name)
    assert any(n.endswith("sqrt_end_time") for n in names)


# ------------------------------------------------------------------------------------------ round trip, log-det
def test_vector_flow_round_trip_and_log_det_against_the_brute_force_jacobian() -> None:
    flow = F.build("ffjord", (3,), hidden=(16, 16), blocks=2, atol=1e-9, rtol=1e-9, adjoint=False)
    flow = _perturbed(flow.double(), 0.1, 18).eval()
    x = torch.randn(5, 3, generator=_gen(19), dtype=DT)
    z, logdet = flow(x)
    assert (flow.inverse(z) - x).abs().max() < 1e-7
    torch.testing.assert_close(logdet, F.brute_force_logdet(lambda v: flow(v)[0], x), atol=1e-7, rtol=1e-7)

    hutch = F.build("ffjord", (3,), hidden=(16, 16), blocks=2, atol=1e-9, rtol=1e-9, estimator="hutchinson")
    hutch = hutch.double().eval()
    hutch.load_state_dict(flow.state_dict())
    assert hutch.logdet_kind == "unbiased"
    exact_lp = F.standard_normal_log_prob(z) + logdet
    torch.testing.assert_close(hutch.log_prob(x, exact=True), exact_lp, atol=1e-7, rtol=1e-7)  # exact_override
    assert not torch.allclose(hutch.log_prob(x), exact_lp, atol=1e-3)


def test_image_log_det_against_the_brute_force_jacobian() -> None:
    """Logit preprocessing + a conv CNF (ConcatConv2d dynamics, exact divergence) on 1×4×4 images."""
    opts = {"hidden": (8,), "blocks": 1, "estimator": "exact", "atol": 1e-9, "rtol": 1e-9, "adjoint": False}
    flow = _perturbed(F.build("ffjord", (1, 4, 4), **opts).double(), 0.05, 29).eval()
    x = 0.05 + 0.9 * torch.rand(3, 1, 4, 4, generator=_gen(30), dtype=DT)
    z, logdet = flow(x)
    torch.testing.assert_close(logdet, F.brute_force_logdet(lambda v: flow(v)[0], x), atol=1e-7, rtol=1e-7)
    assert (flow.inverse(z) - x).abs().max() < 1e-7


def test_two_dimensional_states_use_the_exact_divergence_in_eval_mode() -> None:
    flow = _perturbed(F.build("ffjord", (2,), preset="small", estimator="hutchinson").double(), 0.1, 20)
    exact = F.build("ffjord", (2,), preset="small").double()
    exact.load_state_dict(flow.state_dict())
    x = torch.randn(7, 2, generator=_gen(21), dtype=DT)
    flow.eval()
    exact.eval()
    with torch.no_grad():
        torch.testing.assert_close(flow.log_prob(x), exact.log_prob(x))
        flow.transform.transforms[0].exact_eval_max_dim = 0
        assert not torch.allclose(flow.log_prob(x), exact.log_prob(x))


def test_configure_estimator_switches_to_the_exact_divergence_and_the_probe() -> None:
    flow = F.build("ffjord", (3,), preset="small", estimator="hutchinson").double()
    block = flow.transform.transforms[0]
    F.hooks.configure_estimator(flow, {"estimator": "exact", "probe": "rademacher", "n_exact_terms": 5})
    assert flow.logdet_kind == "exact" and block.noise_kind == "rademacher"
    x = torch.randn(4, 3, generator=_gen(22), dtype=DT)
    torch.testing.assert_close(flow(x)[1], flow(x)[1], rtol=0, atol=0)
    F.hooks.configure_estimator(flow, {"estimator": None})
    assert flow.logdet_kind == "unbiased" and block.noise_kind == "gaussian"
    with pytest.raises(ValueError, match=r"probe: 'uniform' is not one of: gaussian, rademacher"):
        F.hooks.configure_estimator(flow, {"probe": "uniform"})


def test_image_odenvp_round_trip() -> None:
    flow = F.build("ffjord", (1, 8, 8), preset="small", hidden=(8,), atol=1e-8, rtol=1e-8).double()
    flow = _perturbed(flow, 0.02, 23).eval()
    set_noise_generator(flow, _gen(24))
    x = 0.05 + 0.9 * torch.rand(3, 1, 8, 8, generator=_gen(25), dtype=DT)
    with torch.no_grad():
        z, logdet = flow(x)
        assert z.shape == x.shape and logdet.shape == (3,) and torch.isfinite(logdet).all()
        assert (flow.inverse(z) - x).abs().max() < 1e-5


def test_odenvp_structure_and_published_image_defaults() -> None:
    flow = F.build("ffjord", (1, 28, 28))
    modules = list(flow.transform.modules())
    blocks = [m for m in modules if isinstance(m, CNF)]
    assert len(blocks) == 10  # 3 scales: (2 + 2) + (2 + 2) + 2 CNFs
    logit = flow.transform.transforms[0]
    assert isinstance(logit, LogitTransform) and logit.alpha == 1e-6
    first = blocks[0]
    assert first.divergence == "hutchinson" and first.noise_kind == "rademacher" and flow.logdet_kind == "unbiased"
    assert first.end_time.item() == pytest.approx(1.0)
    layers = first.dynamics.net.layers
    assert all(isinstance(layer, ConcatConv2d) for layer in layers)
    assert [layer.conv.out_channels for layer in layers] == [64, 64, 64, 1]
    assert first.dynamics.net.activation == "softplus"
    shapes = [b.dynamics.net.layers[0].conv.in_channels - 1 for b in blocks]
    assert shapes == [1, 1, 4, 4, 2, 2, 8, 8, 4, 4]  # squeeze ×4, factor out ½ per scale


def test_toy_defaults_are_the_published_ones() -> None:
    cfg = F.resolve_config("ffjord")
    assert (cfg.hidden, cfg.solver, cfg.atol, cfg.rtol, cfg.adjoint) == ((64, 64, 64), "dopri5", 1e-5, 1e-5, True)
    assert (cfg.train_end_time, cfg.exact_eval_max_dim, cfg.alpha) == (True, 2, 1e-6)
    assert (cfg.kinetic_energy, cfg.jacobian_frobenius) == (0.0, 0.0)
    assert (cfg.layer_type, cfg.activation, cfg.blocks, cfg.end_time) == ("concatsquash", "tanh", 1, 0.5)
    assert (cfg.estimator, cfg.probe) == ("exact", "gaussian")
    images = F.resolve_config("ffjord", (1, 28, 28))  # the published image model is the default for images
    assert (images.layer_type, images.activation, images.blocks, images.end_time) == ("concat", "softplus", 2, 1.0)
    assert (images.estimator, images.probe) == ("hutchinson", "rademacher")
    flow = F.build("ffjord", (2,))
    (block,) = flow.transform.transforms
    assert flow.logdet_kind == "exact" and block.end_time.item() == pytest.approx(0.5)
    assert block.dynamics.sqrt_end_time.requires_grad
    widths = [(layer.base.in_features, layer.base.out_features) for layer in block.dynamics.net.layers]
    assert widths == [(2, 64), (64, 64), (64, 64), (64, 2)]
    assert all(isinstance(layer, ConcatSquashLinear) for layer in block.dynamics.net.layers)
    assert block.dynamics.net.activation == "tanh"


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"solver": "rk4"}, "ffjord.step_size: None is not a number > 0 (required by rk4)"),
        ({"solver": "bdf"}, "ffjord.solver: 'bdf' is not one of: dopri5, dopri8"),
        ({"estimator": "brute_force"}, "ffjord.estimator: 'brute_force' is not one of: exact, hutchinson"),
        ({"atol": 0.0}, "ffjord.atol: 0.0 is not a number > 0"),
        ({"kinetic_energy": -1.0}, "ffjord.kinetic_energy: -1.0 is not a number >= 0"),
    ],
)
def test_bad_options_are_one_line_errors(options: dict, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        F.build("ffjord", (2,), **options)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_brute_force_divergence_is_refused_for_large_images() -> None:
    with pytest.raises(ValueError, match=r"ffjord\.estimator: 'exact' is not hutchinson for samples of 3072"):
        F.build("ffjord", (3, 32, 32), estimator="exact")


def test_fixed_step_solvers_take_step_size_in_units_of_t() -> None:
    a = -0.5 * torch.eye(2, dtype=DT)
    for method, per_step in (("euler", 1), ("rk4", 4)):
        cnf = _linear_cnf(a, 0.5, solver=ODESolverOptions(method=method, step_size=0.1), train_end_time=False)
        z, _ = cnf(torch.ones(3, 2, dtype=DT))
        assert cnf.nfe_forward == 5 * per_step
    torch.testing.assert_close(z, torch.full((3, 2), math.exp(-0.25), dtype=DT), atol=1e-6, rtol=0)  # rk4


# ------------------------------------------------------------------------------------------------ solver failures
class _BlowUp(nn.Module):
    """dz/dt = 1e6·z³: the solution reaches infinity at t = 1/(2·10⁶·z₀²)."""

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        return 1e6 * z.pow(3)


class _NaN(nn.Module):
    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        return torch.log(z - 10.0)


def test_a_diverging_solve_raises_with_time_step_size_and_solver() -> None:
    cnf = CNF(_BlowUp(), end_time=0.5).double()
    with pytest.raises(ODESolveError) as info:
        cnf(torch.ones(2, 2, dtype=DT))
    message = str(info.value)
    parts = ("ODE solve failed at t=5e-07 of T=0.5", "underflow", "dopri5, atol 1e-05, rtol 1e-05", "forward solve")
    for part in parts:
        assert part in message, message
    assert isinstance(info.value, RuntimeError)


def test_nan_dynamics_and_fixed_step_blow_ups_raise_instead_of_returning_nan() -> None:
    with pytest.raises(ODESolveError, match=r"at t=0 of T=0.5 \(step size 0 underflow .*NaN/inf in f"):
        CNF(_NaN()).double()(torch.ones(2, 2, dtype=DT))
    euler = ODESolverOptions(method="euler", step_size=0.01)
    with pytest.raises(ODESolveError, match=r"failed at t=0.0\d+ of T=0.5 \(non-finite state .* euler\)"):
        CNF(_BlowUp(), solver=euler).double()(torch.ones(2, 2, dtype=DT))
    budget = ODESolverOptions(max_steps=3)
    with pytest.raises(ODESolveError, match="more than max_steps=3 steps"):
        CNF(_BlowUp(), solver=budget).double()(torch.ones(2, 2, dtype=DT))
    with pytest.raises(ODESolveError, match=r"in the inverse solve \(latent → data\)"):
        CNF(_BlowUp(), solver=budget).double().inverse(torch.ones(2, 2, dtype=DT))


def test_a_failing_adjoint_solve_raises_from_backward() -> None:
    """With a small step budget some forward solves pass and their adjoint solve (more steps) fails."""
    torch.manual_seed(0)
    x = torch.randn(16, 2, generator=_gen(31), dtype=DT)
    failures = []
    for budget in range(1, 8):
        flow = F.build("ffjord", (2,), max_steps=budget, atol=1e-7, rtol=1e-7).double()
        try:
            loss = -flow.log_prob(x).mean()
        except ODESolveError:
            continue
        try:
            loss.backward()
        except ODESolveError as err:
            failures.append(str(err))
    assert failures and all("in the adjoint solve of the backward pass" in f for f in failures), failures


# ---------------------------------------------------------------------------------------------------- regularisers
def test_regularisers_have_the_closed_form_of_a_linear_ode() -> None:
    """f = a·z: ∫₀ᵀ ‖f‖²/D dt = a‖x‖²(e^{2aT} − 1)/(2D) and ∫₀ᵀ ‖∂f/∂z‖²_F/D dt = a²T."""
    a, dim = 0.8, 2
    x = torch.randn(6, dim, generator=_gen(26), dtype=DT)
    plain = _linear_cnf(a * torch.eye(dim, dtype=DT), 0.5)
    plain(x)
    assert plain.regularization_loss() is None
    cnf = _linear_cnf(a * torch.eye(dim, dtype=DT), 0.5, kinetic_energy=2.0, jacobian_frobenius=3.0)
    cnf(x)
    end_time = cnf.end_time.item()  # s² with s = √0.5 stored in float32 before .double()
    kinetic = (a * x.pow(2).sum(1) * (math.exp(2 * a * end_time) - 1) / (2 * dim)).mean()
    expected = 2.0 * kinetic + 3.0 * a**2 * end_time
    torch.testing.assert_close(cnf.regularization_loss(), expected, atol=1e-8, rtol=1e-8)
    cnf.eval()
    cnf(x)
    assert cnf.regularization_loss() is None


def test_regularisers_grow_with_the_dynamics_and_reach_the_loss() -> None:
    flow = F.build("ffjord", (2,), preset="small", kinetic_energy=0.1, jacobian_frobenius=0.1, estimator="hutchinson")
    flow = flow.double()
    set_noise_generator(flow, _gen(27))
    x = torch.randn(64, 2, generator=_gen(28), dtype=DT)
    flow(x)
    small = F.hooks.regularization_loss(flow)
    assert small is not None and torch.isfinite(small) and small > 0
    output_layer = flow.transform.transforms[0].dynamics.net.layers[-1]
    last = output_layer.base
    with torch.no_grad():  # f → 3f at every z
        for p in (last.weight, last.bias, output_layer.hyper_bias.weight):
            p.mul_(3.0)
    set_noise_generator(flow, _gen(27))
    flow(x)
    big = F.hooks.regularization_loss(flow)
    assert big > 4 * small
    big.backward()
    assert last.weight.grad is not None and last.weight.grad.abs().sum() > 0
    clone = copy.deepcopy(flow)  # the stored penalty (a graph) is not copied
    assert F.hooks.regularization_loss(clone) is None
