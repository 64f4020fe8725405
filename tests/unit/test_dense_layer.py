"""i-DenseNet dense layer and branch: η weights, the learnable-concatenation schedule, Lipschitz bounds (float64)."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import Tensor, nn

from nflab.flows import hooks
from nflab.flows.layers.activations import CLipSwish, CPila, LipSwish
from nflab.flows.layers.dense import LipschitzDenseLayer, dense_net
from nflab.flows.layers.frozen import frozen_copy
from nflab.flows.layers.lipschitz import SpectralConv2d, SpectralLinear, lipschitz_layers

pytestmark = pytest.mark.usefixtures("float64")  # tests/conftest.py


def _jacobian_norm(fn: nn.Module, x: Tensor) -> float:
    """Largest spectral norm of the brute-force Jacobian of ``fn`` over the samples of ``x``."""
    shape = x.shape[1:]
    worst = 0.0
    for xi in x:
        jac = torch.func.jacrev(lambda v: fn(v.view(1, *shape)).reshape(-1))(xi.reshape(-1))
        worst = max(worst, float(torch.linalg.matrix_norm(jac.detach(), ord=2)))
    return worst


def _set_k(layer: LipschitzDenseLayer, k1: float, k2: float) -> None:
    with torch.no_grad():
        layer.k1.fill_(k1)
        layer.k2.fill_(k2)


def _k(layer: LipschitzDenseLayer) -> tuple[float, float]:
    return float(layer.k1.detach()), float(layer.k2.detach())


# ---- η and the layer map -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("k1", "k2"), [(1.0, 1.0), (-3.0, 2.0), (5.0, -0.5)])
def test_eta_squares_sum_to_lip_coeff_squared(k1: float, k2: float) -> None:
    layer = LipschitzDenseLayer(nn.Linear(3, 2), lip_coeff=0.9)
    _set_k(layer, k1, k2)
    eta1, eta2 = (float(e.detach()) for e in layer.eta())
    assert eta1**2 + eta2**2 == pytest.approx(0.81, rel=1e-12)
    s1, s2 = math.log1p(math.exp(k1)) + 0.1, math.log1p(math.exp(k2)) + 0.1
    assert eta1 / eta2 == pytest.approx(s1 / s2, rel=1e-12)
    x = torch.randn(4, 3)
    out = layer(x)
    torch.testing.assert_close(out[:, :3], eta1 * x)
    torch.testing.assert_close(out[:, 3:], eta2 * layer.network(x))


def test_initial_eta_is_lip_coeff_over_sqrt2() -> None:
    layer = LipschitzDenseLayer(nn.Identity())
    for eta in layer.eta():
        assert float(eta.detach()) == pytest.approx(0.98 / math.sqrt(2), rel=1e-12)


@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_dense_layer_lipschitz_bound(scale: float) -> None:
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(4, 3), nn.Tanh())
    with torch.no_grad():
        network[0].weight.mul_(scale / float(torch.linalg.matrix_norm(network[0].weight, ord=2)))
    layer = LipschitzDenseLayer(network, lip_coeff=0.95)
    _set_k(layer, 0.3, 2.0)
    x = torch.randn(16, 4) * 0.3  # near 0 where tanh' ≈ 1, so Lip(network) ≈ scale is nearly attained
    eta1, eta2 = (float(e.detach()) for e in layer.eta())
    lip_net = _jacobian_norm(network, x)
    lip_layer = _jacobian_norm(layer, x)
    assert lip_layer <= math.sqrt(eta1**2 + eta2**2 * lip_net**2) * (1 + 1e-12)
    assert lip_layer <= 0.95 * max(1.0, scale) * (1 + 1e-12)
    assert lip_layer >= eta1  # the identity part alone already reaches η₁


def test_fixed_concat_uses_buffers() -> None:
    layer = LipschitzDenseLayer(nn.Linear(2, 2), learnable_concat=False)
    names = {name for name, _ in layer.named_parameters()}
    assert "k1" not in names and "k2" not in names
    assert {"k1", "k2", "steps"} <= set(layer.state_dict())


# ---- the learnable-concatenation schedule ------------------------------------------------------------------------


def _train_steps(model: nn.Module, n: int) -> list[tuple[float, float]]:
    """n optimizer steps (that move K), each followed by the trainer hook; K of the first dense layer after each."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    layer = next(m for m in model.modules() if isinstance(m, LipschitzDenseLayer))
    history = []
    for _ in range(n):
        optimizer.zero_grad()
        model(torch.randn(8, 2)).pow(2).sum().backward()
        optimizer.step()
        hooks.after_optimizer_step(model)
        history.append(_k(layer))
    return history


def test_schedule_resets_k_before_start_and_leaves_it_free_after() -> None:
    model = nn.Sequential(LipschitzDenseLayer(nn.Linear(2, 3), start_learnable_concat=3), nn.Linear(5, 1))
    history = _train_steps(model, 6)
    assert history[:3] == [(1.0, 1.0)] * 3
    assert all(k != (1.0, 1.0) for k in history[3:])
    assert history[3] != history[4] != history[5]
    assert int(model[0].steps) == 6


def test_schedule_zero_means_learnable_from_the_start() -> None:
    model = nn.Sequential(LipschitzDenseLayer(nn.Linear(2, 3)), nn.Linear(5, 1))
    assert _train_steps(model, 1)[0] != (1.0, 1.0)


def test_step_counter_survives_a_state_dict_round_trip() -> None:
    def make() -> nn.Sequential:
        return nn.Sequential(LipschitzDenseLayer(nn.Linear(2, 3), start_learnable_concat=3), nn.Linear(5, 1))

    model = make()
    _train_steps(model, 2)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    resumed = make()
    resumed.load_state_dict(torch.load(buffer))
    assert int(resumed[0].steps) == 2
    history = _train_steps(resumed, 2)
    assert history[0] == (1.0, 1.0)  # step 3 of 3 still resets
    assert history[1] != (1.0, 1.0)  # then K is free


def test_bad_options_are_one_line_errors() -> None:
    cases = [
        (lambda: LipschitzDenseLayer(nn.Identity(), lip_coeff=-1.0), "lip_coeff"),
        (lambda: LipschitzDenseLayer(nn.Identity(), start_learnable_concat=-2), "start_learnable_concat"),
        (lambda: dense_net(2, 2, depth=2, growth=5, activation="cpila", coeff=0.9, lip_coeff=0.98, conv=False), "even"),
        (lambda: dense_net(2, 2, depth=0, growth=4, activation="elu", coeff=0.9, lip_coeff=0.98, conv=False), "depth"),
        (
            lambda: dense_net(
                2, 2, depth=1, growth=4, activation="elu", coeff=0.9, lip_coeff=0.98, conv=True, kernel_size=2
            ),
            "kernel_size",
        ),
        (
            lambda: dense_net(2, 2, depth=1, growth=4, activation="gelu", coeff=0.9, lip_coeff=0.98, conv=False),
            "activation",
        ),
    ]
    for build, text in cases:
        with pytest.raises(ValueError, match=text) as info:
            build()
        assert "\n" not in str(info.value)


# ---- the i-DenseNet branch ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("activation", "act_type", "width"), [("clipswish", CLipSwish, 8), ("lipswish", LipSwish, 16)])
def test_dense_net_vector_layout(activation: str, act_type: type, width: int) -> None:
    net = dense_net(2, 2, depth=3, growth=16, activation=activation, coeff=0.9, lip_coeff=0.98, conv=False)
    assert len(net) == 4
    for index, layer in enumerate(net[:3]):
        assert isinstance(layer, LipschitzDenseLayer)
        linear, act = layer.network
        assert isinstance(linear, SpectralLinear) and isinstance(act, act_type)
        assert (linear.in_features, linear.out_features) == (2 + 16 * index, width)
    assert isinstance(net[3], SpectralLinear) and (net[3].in_features, net[3].out_features) == (50, 2)
    assert net(torch.randn(5, 2)).shape == (5, 2)


def test_dense_net_conv_layout_and_parameters() -> None:
    net = dense_net(
        3, 3, depth=2, growth=6, activation="cpila", coeff=0.98, lip_coeff=0.98, conv=True,
        activation_params={"k": 4.0, "shift": 0.3}, zero_init_last=True,
    )  # fmt: skip
    conv, act = net[0].network
    assert isinstance(conv, SpectralConv2d) and conv.kernel_size == (3, 3) and conv.padding == (1, 1)
    assert conv.out_channels == 3 and isinstance(act, CPila) and (act.k, act.shift) == (4.0, 0.3)
    last = net[-1]
    assert isinstance(last, SpectralConv2d) and last.kernel_size == (1, 1) and last.in_channels == 15
    assert float(last.weight.detach().abs().max()) < 1e-2
    assert net(torch.randn(2, 3, 4, 4)).shape == (2, 3, 4, 4)


@pytest.mark.parametrize("conv", [False, True])
def test_dense_net_is_coeff_lipschitz(conv: bool) -> None:
    net = dense_net(2, 2, depth=2, growth=8, activation="clipswish", coeff=0.95, lip_coeff=0.98, conv=conv)
    x = torch.randn(4, 2, 3, 3) if conv else 2 * torch.randn(8, 2)
    net(x)
    for layer in lipschitz_layers(net):
        with torch.no_grad():
            layer.weight.mul_(5.0)
    for dense in net[:2]:
        _set_k(dense, -1.0, 3.0)  # η₂ near lip_coeff: the branch through the convs dominates
    hooks.before_evaluation(net)
    assert _jacobian_norm(net, x) <= 0.95


def test_frozen_dense_net_fixes_eta_and_matches_exactly() -> None:
    net = dense_net(2, 2, depth=2, growth=4, activation="lipswish", coeff=0.9, lip_coeff=0.98, conv=True)
    x = torch.randn(3, 2, 4, 4)
    net(x)
    _set_k(net[0], 0.2, -0.4)
    frozen = frozen_copy(net)
    assert torch.equal(frozen(x), net(x))
    assert not any(p.requires_grad for p in frozen.parameters())
    eta_before = [float(e) for e in frozen[0].eta()]
    _set_k(net[0], 3.0, 3.0)
    frozen[0].after_optimizer_step()  # no-op on a frozen layer
    assert [float(e) for e in frozen[0].eta()] == eta_before
    assert not torch.equal(frozen(x), net(x))
