"""Spectral / induced-norm layers, the Lipschitz nets and frozen copies, against brute-force operator norms (float64).

Operator norms come from explicit matrices (the conv applied to every basis image), exhaustive vertex
enumeration (p = 1, ∞ domains) or a fine grid on the unit p-sphere of R² — never from the layer's own code.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nflab.flows import hooks
from nflab.flows.layers.frozen import frozen_copy
from nflab.flows.layers.induced_norm import dual_exponent, normalize_u, normalize_v
from nflab.flows.layers.lipschitz import SpectralConv2d, SpectralLinear, lipschitz_layers, set_power_budgets
from nflab.flows.layers.lipschitz_nets import lipschitz_convnet, lipschitz_mlp

INF = float("inf")


pytestmark = pytest.mark.usefixtures("float64")  # tests/conftest.py


def _conv_matrix(weight: Tensor, shape: tuple[int, int, int], *, stride: int, padding: int) -> Tensor:
    """The conv (no bias) as an explicit matrix: column j = conv(e_j) for every basis image e_j."""
    n = shape[0] * shape[1] * shape[2]
    basis = torch.eye(n).view(n, *shape)
    return F.conv2d(basis, weight, stride=stride, padding=padding).reshape(n, -1).t()


def _scale_weight(layer: nn.Module, factor: float) -> None:
    with torch.no_grad():
        layer.weight.mul_(factor)


def _p_norm(x: Tensor, p: float, dim: int = -1) -> Tensor:
    return torch.linalg.vector_norm(x, ord=p, dim=dim)


def _brute_norm_2d(weight: Tensor, p: float, q: float, points: int = 400_001) -> float:
    """max ‖Wv‖_q over a fine grid of the unit p-sphere of R² (weight: [out, 2])."""
    t = torch.linspace(0.0, math.pi, points)
    v = torch.stack([torch.cos(t), torch.sin(t)], dim=1)
    v = v / _p_norm(v, p).unsqueeze(1)
    return float(_p_norm(v @ weight.t(), q).max())


def _brute_norm_vertices(weight: Tensor, p: float, q: float) -> float:
    """Exact ‖W‖_{p→q} for p = 1 (vertices ±e_j) or p = ∞ (vertices {±1}^n): a convex function peaks at vertices."""
    n = weight.shape[1]
    if p == 1.0:
        vertices = torch.eye(n)
    else:
        grid = torch.cartesian_prod(*[torch.tensor([-1.0, 1.0])] * n)
        vertices = grid.view(-1, n)
    return float(_p_norm(vertices @ weight.t(), q).max())


def _jacobian_norm(fn: nn.Module, x: Tensor) -> float:
    """Largest spectral norm of the brute-force Jacobian of ``fn`` over the samples of ``x``."""
    shape = x.shape[1:]
    worst = 0.0
    for xi in x:
        jac = torch.func.jacrev(lambda v: fn(v.view(1, *shape)).reshape(-1))(xi.reshape(-1))
        worst = max(worst, float(torch.linalg.matrix_norm(jac.detach(), ord=2)))
    return worst


# ---- power iteration ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("d_in", "d_out"), [(2, 2), (7, 3), (5, 16), (32, 32)])
def test_dense_power_iteration_converges_to_the_spectral_norm(d_in: int, d_out: int) -> None:
    layer = SpectralLinear(d_in, d_out, coeff=0.9)
    layer.update_lipschitz(tol=1e-13, max_iterations=20_000)
    exact = float(torch.linalg.matrix_norm(layer.weight.detach(), ord=2))
    assert layer.estimated_norm() == pytest.approx(exact, rel=1e-6)


@pytest.mark.parametrize(
    ("kernel", "padding", "stride", "size"),
    [(3, 1, 1, 5), (1, 1, 1, 5), (3, 0, 1, 5), (3, 1, 2, 5), (3, 1, 2, 6), (1, 0, 2, 6), (5, 2, 2, 5), (4, 1, 3, 7)],
)
def test_conv_power_iteration_matches_the_explicit_conv_matrix(
    kernel: int, padding: int, stride: int, size: int
) -> None:
    layer = SpectralConv2d(2, 3, kernel, padding=padding, stride=stride, coeff=0.9)
    x = torch.randn(4, 2, size, size)
    layer(x)
    layer.update_lipschitz(tol=1e-13, max_iterations=20_000)
    matrix = _conv_matrix(layer.weight.detach(), (2, size, size), stride=stride, padding=padding)
    exact = float(torch.linalg.matrix_norm(matrix, ord=2))
    assert layer.estimated_norm() == pytest.approx(exact, rel=1e-6)
    if kernel > 1:
        assert layer.u.numel() == matrix.shape[0] and layer.v.numel() == matrix.shape[1]


def test_conv_output_equals_the_explicit_matrix_with_the_normalised_weight() -> None:
    layer = SpectralConv2d(2, 3, 3, padding=1, stride=2, coeff=0.5)
    x = torch.randn(3, 2, 5, 5)
    layer(x)
    layer.update_lipschitz(n_iterations=2000)
    weight = layer.weight.detach()
    matrix = _conv_matrix(weight, (2, 5, 5), stride=2, padding=1)
    sigma = float(torch.linalg.matrix_norm(matrix, ord=2))
    assert sigma > 0.5  # the normalisation is active
    expected = (x.reshape(3, -1) @ matrix.t()) / (sigma / 0.5)
    bias = layer.bias.detach().view(1, 3, 1, 1)
    got = (layer(x) - bias).reshape(3, -1)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-9)


# ---- soft normalisation ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("coeff", [0.5, 0.97])
def test_normalised_dense_weight_has_norm_at_most_coeff(coeff: float) -> None:
    layer = SpectralLinear(6, 9, coeff=coeff)
    _scale_weight(layer, 10.0)
    layer.update_lipschitz(n_iterations=500)
    norm = float(torch.linalg.matrix_norm(layer.normalized_weight().detach(), ord=2))
    assert norm <= coeff + 1e-6
    assert norm == pytest.approx(coeff, rel=1e-6)
    assert layer.lipschitz_bound() == coeff
    x = torch.randn(5, 6)
    w = layer.weight.detach()
    expected = x @ (w / (float(torch.linalg.matrix_norm(w, ord=2)) / coeff)).t() + layer.bias.detach()
    torch.testing.assert_close(layer(x), expected, rtol=1e-6, atol=1e-9)


def test_normalised_conv_operator_has_norm_at_most_coeff() -> None:
    layer = SpectralConv2d(3, 4, 3, padding=1, coeff=0.9)
    x = torch.randn(2, 3, 6, 6)
    layer(x)
    _scale_weight(layer, 5.0)
    layer.update_lipschitz(n_iterations=500)
    matrix = _conv_matrix(layer.normalized_weight().detach(), (3, 6, 6), stride=1, padding=1)
    norm = float(torch.linalg.matrix_norm(matrix, ord=2))
    assert 0.9 * (1 - 1e-6) <= norm <= 0.9 + 1e-6


def test_weight_below_coeff_is_left_untouched() -> None:
    layer = SpectralLinear(5, 5, coeff=0.97)
    with torch.no_grad():
        layer.weight.div_(float(torch.linalg.matrix_norm(layer.weight, ord=2)) / 0.5)
    layer.update_lipschitz(n_iterations=200)
    assert layer.estimated_norm() == pytest.approx(0.5, rel=1e-6)
    assert torch.equal(layer.normalized_weight(), layer.weight)
    assert layer.lipschitz_bound() == pytest.approx(0.5, rel=1e-6)


def test_gradient_flows_through_w_only_with_u_v_constant() -> None:
    layer = SpectralLinear(4, 3, coeff=0.3)
    x = torch.randn(6, 4)
    layer(x).pow(2).sum().backward()
    u, v = layer.u.clone(), layer.v.clone()
    weight = layer.weight.detach().clone().requires_grad_(True)
    sigma = u @ weight @ v
    expected_out = F.linear(x, weight / torch.clamp(sigma / 0.3, min=1.0), layer.bias.detach())
    (expected,) = torch.autograd.grad(expected_out.pow(2).sum(), weight)
    torch.testing.assert_close(layer.weight.grad, expected)
    assert not layer.u.requires_grad and not layer.v.requires_grad


def test_zero_init_divides_the_default_init_by_1000() -> None:
    torch.manual_seed(7)
    plain = SpectralLinear(5, 4)
    torch.manual_seed(7)
    small = SpectralLinear(5, 4, zero_init=True)
    torch.testing.assert_close(small.weight, plain.weight / 1000)
    torch.testing.assert_close(small.bias, plain.bias)


# ---- when power iterations run ------------------------------------------------------------------------------------


def test_forward_never_changes_u_and_v() -> None:
    for layer, x in [(SpectralLinear(4, 6), torch.randn(3, 4)), (SpectralConv2d(2, 2, 3, padding=1), None)]:
        x = torch.randn(3, 2, 4, 4) if x is None else x
        layer(x)
        u, v = layer.u.clone(), layer.v.clone()
        _scale_weight(layer, 3.0)
        for mode in (True, False):
            layer.train(mode)
            layer(x).sum().backward()
        assert torch.equal(layer.u, u) and torch.equal(layer.v, v)


def test_hooks_run_the_training_and_evaluation_budgets() -> None:
    model = nn.Sequential(SpectralLinear(8, 8), nn.Tanh(), SpectralLinear(8, 8))
    set_power_budgets(model, train_iterations=3, eval_iterations=None, eval_tol=1e-3)
    reference = copy.deepcopy(model)
    for layer in lipschitz_layers(model):
        _scale_weight(layer, 2.0)
    for layer in lipschitz_layers(reference):
        _scale_weight(layer, 2.0)
    hooks.after_optimizer_step(model)
    for layer, ref in zip(lipschitz_layers(model), lipschitz_layers(reference)):
        assert layer.last_power_iterations == 3
        assert not torch.equal(layer.u, ref.u) and not torch.equal(layer.v, ref.v)
        for _ in range(3):
            ref.update_lipschitz(n_iterations=1)
        assert torch.equal(layer.u, ref.u) and torch.equal(layer.v, ref.v)
    hooks.before_evaluation(model)
    for layer in lipschitz_layers(model):
        assert 1 <= layer.last_power_iterations < 200  # stopped by the tolerance
        u_old = layer.u.clone()
        layer.update_lipschitz(n_iterations=1)
        assert float((layer.u - u_old).norm()) / math.sqrt(8) < 1e-3 * (1 + float(layer.u.abs().max())) * 1.5


def test_budget_none_skips_and_tol_respects_the_cap() -> None:
    layer = SpectralLinear(6, 6)
    layer.set_power_budget(train_iterations=None, train_tol=None)
    u = layer.u.clone()
    layer.after_optimizer_step()
    assert torch.equal(layer.u, u)
    layer.set_power_budget(eval_iterations=None, eval_tol=1e-300, max_iterations=7)
    # start v away from the fixed point: vectors already converged to machine precision stop at step 1
    # (|u − u_old| = 0 < tol), whatever the cap, for some random weights
    layer.v = torch.nn.functional.normalize(layer.v + torch.linspace(-1, 1, layer.v.numel()), dim=0)
    layer.before_evaluation()
    assert layer.last_power_iterations == 7
    assert layer.update_lipschitz(n_iterations=50, tol=1e-2) < 50  # both: early stop at tol within n_iterations


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"train_iterations": -1}, "train_iterations"),
        ({"train_tol": 0.0}, "train_tol"),
        ({"eval_iterations": 2.5}, "eval_iterations"),
        ({"eval_tol": "x"}, "eval_tol"),
    ],
)
def test_bad_budget_is_a_one_line_error(kwargs: dict, option: str) -> None:
    layer = SpectralLinear(2, 2)
    with pytest.raises(ValueError, match=option) as info:
        layer.set_power_budget(**kwargs)
    assert "\n" not in str(info.value)


def test_bad_layer_options_are_one_line_errors() -> None:
    cases = [
        (lambda: SpectralLinear(2, 2, coeff=0.0), "coeff"),
        (lambda: SpectralLinear(0, 2), "in_features"),
        (lambda: SpectralLinear(2, 2, domain=0.5), "domain"),
        (lambda: SpectralLinear(2, 2, codomain=float("nan")), "codomain"),
        (lambda: SpectralConv2d(2, 2, 3, domain=1.0), "domain=2, codomain=2"),
        (lambda: SpectralConv2d(2, 2, 0), "kernel_size"),
        (lambda: SpectralLinear(2, 2).update_lipschitz(), "n_iterations"),
    ]
    for build, text in cases:
        with pytest.raises(ValueError, match=text) as info:
            build()
        assert "\n" not in str(info.value)


# ---- lazy conv buffers and state dicts ------------------------------------------------------------------------------


def test_conv_state_dict_round_trips_into_a_fresh_module() -> None:
    layer = SpectralConv2d(2, 3, 3, padding=1)
    x = torch.randn(2, 2, 5, 5)
    layer(x)
    _scale_weight(layer, 4.0)
    layer.update_lipschitz(n_iterations=3)
    fresh = SpectralConv2d(2, 3, 3, padding=1)
    assert fresh.u is None
    fresh.load_state_dict(layer.state_dict())
    assert torch.equal(fresh.u, layer.u) and torch.equal(fresh.v, layer.v)
    assert fresh.spatial_dims.tolist() == [5, 5]
    assert torch.equal(fresh(x), layer(x))  # the loaded u, v are used: no fresh random init at this forward
    with pytest.raises(ValueError, match="5×5"):
        fresh(torch.randn(1, 2, 6, 6))


def test_a_failed_lazy_init_leaves_the_conv_uninitialised() -> None:
    layer = SpectralConv2d(2, 2, 3, padding=1)
    x = torch.randn(2, 2, 4, 4)
    with pytest.raises(RuntimeError, match="random"):  # random starts are refused inside vmap
        torch.func.vmap(layer)(x.unsqueeze(1))
    assert not layer.is_initialized and layer.spatial_dims.tolist() == [0, 0]
    out = layer(x)
    torch.testing.assert_close(torch.func.vmap(layer)(x.unsqueeze(1)).squeeze(1), out)


def test_conv_net_state_dict_round_trip() -> None:
    net = lipschitz_convnet(2, 6, 2, activation="lipswish", coeff=0.9)
    x = torch.randn(2, 2, 4, 4)
    out = net(x)
    fresh = lipschitz_convnet(2, 6, 2, activation="lipswish", coeff=0.9)
    fresh.load_state_dict(net.state_dict())
    assert torch.equal(fresh(x), out)


def test_one_by_one_conv_uses_the_channel_matrix() -> None:
    layer = SpectralConv2d(4, 3, 1, coeff=0.9)
    assert layer.u.shape == (3,) and layer.v.shape == (4,)  # allocated at construction
    layer.update_lipschitz(tol=1e-13, max_iterations=20_000)
    exact = float(torch.linalg.matrix_norm(layer.weight.detach().view(3, 4), ord=2))
    assert layer.estimated_norm() == pytest.approx(exact, rel=1e-6)
    layer(torch.randn(1, 4, 3, 3))
    layer(torch.randn(1, 4, 5, 7))  # any input size


# ---- induced mixed norms ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 3.0, INF])
def test_normalisers_attain_hoelder_equality(p: float) -> None:
    x = torch.randn(7)
    v = normalize_v(x, p)
    assert float(_p_norm(v, p)) == pytest.approx(1.0, rel=1e-12)
    assert float(v @ x) == pytest.approx(float(_p_norm(x, dual_exponent(p))), rel=1e-12)
    u = normalize_u(x, p)
    assert float(_p_norm(u, dual_exponent(p))) == pytest.approx(1.0, rel=1e-12)
    assert float(u @ x) == pytest.approx(float(_p_norm(x, p)), rel=1e-12)


@pytest.mark.parametrize(
    ("p", "q"), [(1.0, 1.0), (1.0, 2.0), (1.0, INF), (1.0, 3.0), (2.0, INF), (INF, INF), (3.0, INF)]
)
def test_closed_form_norms_match_vertex_enumeration_or_grid(p: float, q: float) -> None:
    layer = SpectralLinear(2 if p not in (1.0, INF) else 4, 5, domain=p, codomain=q, coeff=0.5)
    assert layer.closed_form and layer.u is None
    weight = layer.weight.detach()
    brute = _brute_norm_vertices(weight, p, q) if p in (1.0, INF) else _brute_norm_2d(weight, p, q)
    assert layer.estimated_norm() == pytest.approx(brute, rel=1e-8)


@pytest.mark.parametrize(("p", "q"), [(2.0, 1.0), (2.0, 3.0), (3.0, 1.5), (1.5, 2.0), (INF, 2.0), (INF, 1.5)])
def test_generalised_power_iteration_matches_brute_force(p: float, q: float) -> None:
    torch.manual_seed(3)
    n_in = 4 if p == INF else 2
    layer = SpectralLinear(n_in, 5, domain=p, codomain=q, coeff=0.5)
    assert not layer.closed_form
    layer.update_lipschitz(n_iterations=500)
    weight = layer.weight.detach()
    brute = _brute_norm_vertices(weight, p, q) if p == INF else _brute_norm_2d(weight, p, q)
    assert layer.estimated_norm() <= brute * (1 + 1e-9)  # σ̂ = uᵀWv is a lower bound by Hölder
    assert layer.estimated_norm() == pytest.approx(brute, rel=1e-6)


@pytest.mark.parametrize(("p", "q"), [(1.0, 2.0), (2.0, INF), (3.0, 1.5), (INF, INF)])
def test_normalised_induced_norm_is_at_most_coeff(p: float, q: float) -> None:
    layer = SpectralLinear(2, 3, domain=p, codomain=q, coeff=0.7)
    _scale_weight(layer, 10.0)
    layer.update_lipschitz(n_iterations=300)
    brute = _brute_norm_2d(layer.normalized_weight().detach(), p, q)
    assert brute <= 0.7 * (1 + 1e-6)
    assert brute == pytest.approx(0.7, rel=1e-5)


# ---- the nets -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["lipswish", "clipswish", "cpila", "elu"])
def test_lipschitz_mlp_is_coeff_lipschitz(activation: str) -> None:
    net = lipschitz_mlp(3, [16, 16], 3, activation=activation, coeff=0.95, zero_init_last=False)
    widths = [m.in_features for m in net if isinstance(m, SpectralLinear)]
    factor = 2 if activation in ("clipswish", "cpila") else 1
    assert widths == [3 * factor, 16 * factor, 16 * factor]
    assert isinstance(net[0], nn.Module) and not isinstance(net[0], SpectralLinear)  # preact
    for layer in lipschitz_layers(net):
        _scale_weight(layer, 4.0)
    hooks.before_evaluation(net)
    x = 2 * torch.randn(8, 3)
    assert _jacobian_norm(net, x) <= 0.95


def test_lipschitz_mlp_layout_options() -> None:
    net = lipschitz_mlp(2, [8], 2, activation="relu", coeff=0.9, preact=False)
    assert isinstance(net[0], SpectralLinear) and len(net) == 3
    assert float(net[-1].weight.detach().abs().max()) < 1e-2  # zero_init_last by default
    with pytest.raises(ValueError, match="activation"):
        lipschitz_mlp(2, [8], 2, activation="tanh", coeff=0.9)


@pytest.mark.parametrize("activation", ["lipswish", "clipswish"])
def test_lipschitz_convnet_is_coeff_lipschitz(activation: str) -> None:
    net = lipschitz_convnet(2, 4, 2, activation=activation, coeff=0.9)
    convs = [m for m in net if isinstance(m, SpectralConv2d)]
    assert [c.kernel_size[0] for c in convs] == [3, 1, 3] and [c.padding[0] for c in convs] == [1, 0, 1]
    x = torch.randn(4, 2, 4, 4)
    assert net(x).shape == x.shape
    for layer in convs:
        _scale_weight(layer, 4.0)
    hooks.before_evaluation(net)
    assert _jacobian_norm(net, x) <= 0.9


# ---- frozen copies ------------------------------------------------------------------------------------------------


def _trained_convnet() -> tuple[nn.Module, Tensor]:
    net = lipschitz_convnet(2, 4, 2, activation="clipswish", coeff=0.9)
    x = torch.randn(3, 2, 4, 4)
    net(x)
    for layer in lipschitz_layers(net):
        _scale_weight(layer, 3.0)
    hooks.before_evaluation(net)
    return net, x


def test_frozen_copy_has_identical_outputs_and_no_trainable_parameters() -> None:
    for net, x in [
        _trained_convnet(),
        (lipschitz_mlp(2, [8, 8], 2, activation="cpila", coeff=0.9, zero_init_last=False), torch.randn(5, 2)),
    ]:
        frozen = frozen_copy(net)
        assert torch.equal(frozen(x), net(x))
        assert not any(p.requires_grad for p in frozen.parameters())
        assert all(layer.frozen for layer in lipschitz_layers(frozen))
        xs = x.clone().requires_grad_(True)
        (vjp_frozen,) = torch.autograd.grad(frozen(xs).sum(), xs)
        (vjp_original,) = torch.autograd.grad(net(xs).sum(), xs)
        torch.testing.assert_close(vjp_frozen, vjp_original, rtol=1e-12, atol=1e-12)


def test_frozen_copy_does_not_follow_the_original() -> None:
    net, x = _trained_convnet()
    frozen = frozen_copy(net)
    before = frozen(x)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    net(x).pow(2).sum().backward()
    optimizer.step()
    hooks.after_optimizer_step(net)
    hooks.before_evaluation(frozen)  # hooks are no-ops on frozen layers
    hooks.after_optimizer_step(frozen)
    assert not torch.equal(net(x), before)
    assert torch.equal(frozen(x), before)


def test_frozen_copy_of_an_unseen_conv_needs_an_example() -> None:
    net = lipschitz_convnet(2, 4, 2, activation="relu", coeff=0.9)
    with pytest.raises(RuntimeError, match="example_input"):
        frozen_copy(net)
    x = torch.randn(2, 2, 4, 4)
    frozen = frozen_copy(net, example_input=x)
    assert torch.equal(frozen(x), net(x))
