"""The public API of nflab.flows: registry errors, exact log-det limits, bits/dim and the logit layer."""

from __future__ import annotations

import math

import pytest
import torch

import nflab.flows as F
from nflab.flows.layers import LogitTransform


def test_available_lists_the_families() -> None:
    assert {"nice", "realnvp", "glow", "maf"} <= set(F.available())


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"name": "nicee"}, "family: 'nicee' is not one of: "),
        ({"name": "nice", "bogus": 1}, "nice.bogus: 'bogus' is not an option of nice; allowed: couplings"),
        ({"name": "nice", "couplings": "four"}, "nice.couplings: 'four' is not an integer"),
        ({"name": "nice", "couplings": True}, "nice.couplings: True is not an integer"),
        ({"name": "realnvp", "scale": "softplus"}, "realnvp.scale: 'softplus' is not one of: tanh, exp, sigmoid"),
        ({"name": "maf", "hidden": [64, "x"]}, "maf.hidden[1]: 'x' is not an integer"),
        ({"name": "glow", "preset": "huge"}, "glow.preset: 'huge' is not one of: small"),
        ({"name": "nice", "couplings": 0}, "nice.couplings: 0 is not an integer >= 1"),
    ],
)
def test_bad_options_give_one_line_errors(kwargs: dict, fragment: str) -> None:
    name = kwargs.pop("name")
    with pytest.raises(ValueError) as info:
        F.build(name, (2,), **kwargs)
    message = str(info.value)
    assert fragment in message and "\n" not in message


def test_bad_shape() -> None:
    with pytest.raises(ValueError, match=r"realnvp.shape: \(2, 3\) is not \(d,\) for vectors"):
        F.build("realnvp", (2, 3))
    with pytest.raises(ValueError, match="d >= 2"):
        F.build("realnvp", (1,))


def test_exact_log_prob_refuses_large_inputs() -> None:
    flow = F.build("nice", (3, 32, 32), preset="small")
    with pytest.raises(ValueError, match="at most 1024 dimensions per sample, got 3072"):
        flow.exact_logdet(torch.rand(1, 3, 32, 32))


def test_compose_sums_logdets_and_inverts_in_reverse() -> None:
    a, sig, b = LogitTransform(0.05), _Sigmoid(), LogitTransform(0.0)
    x = torch.rand(4, 3, dtype=torch.float64) * 0.8 + 0.1
    y, la = a(x)
    s, ls = sig(y)
    _, lb = b(s)
    composed = F.Compose(a, sig, b)
    z, total = composed(x)
    torch.testing.assert_close(total, la + ls + lb)
    torch.testing.assert_close(total, F.brute_force_logdet(lambda v: composed(v)[0], x))
    torch.testing.assert_close(composed.inverse(z), x)


class _Sigmoid(F.Transform):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = torch.sigmoid(x)
        return s, torch.log(s * (1 - s)).sum(dim=1)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return torch.logit(z)


@pytest.mark.parametrize("alpha", [0.0, 1e-6, 0.05])
def test_logit_jacobian_against_brute_force(alpha: float) -> None:
    layer = LogitTransform(alpha)
    x = torch.rand(5, 4, dtype=torch.float64) * 0.98 + 0.01
    y, logdet = layer(x)
    brute = F.brute_force_logdet(lambda v: layer(v)[0], x)
    torch.testing.assert_close(logdet, brute)
    s = alpha + (1 - 2 * alpha) * x
    by_hand = (math.log(1 - 2 * alpha) - torch.log(s) - torch.log(1 - s)).sum(dim=1)
    torch.testing.assert_close(logdet, by_hand)
    torch.testing.assert_close(layer.inverse(y), x)


def test_bits_per_dim_hand_computed() -> None:
    # a uniform density on [0,1)^D has log p = 0 → −log2(1/256) = 8 bits per dimension
    assert F.bits_per_dim(torch.tensor(0.0), (3, 32, 32)).item() == pytest.approx(8.0)
    # digits: 17 levels, 64 dims; log p = −20 nats → (20 + 64·log 17) / (64·ln 2)
    expected = (20 + 64 * math.log(17)) / (64 * math.log(2))
    assert F.bits_per_dim(torch.tensor(-20.0), (1, 8, 8), n_bins=17).item() == pytest.approx(expected)
    with pytest.raises(ValueError):
        F.bits_per_dim(0.0, (2,), n_bins=1)


def test_bits_per_dim_of_a_known_model_on_discrete_data() -> None:
    """A flow that is the identity after the logit layer: its bpd equals the analytic value of logistic data."""
    flow = F.build("realnvp", (1, 2, 2), scales=1, width=2, res_blocks=0)
    for p in flow.parameters():
        torch.nn.init.zeros_(p)  # γ = 0 and shift = 0: couplings are the identity
    x = torch.rand(10, 1, 2, 2)
    s = 0.05 + 0.9 * x
    y = torch.log(s) - torch.log1p(-s)
    log_p = (-0.5 * y**2 - 0.5 * math.log(2 * math.pi) + math.log(0.9) - torch.log(s) - torch.log1p(-s)).sum(
        dim=(1, 2, 3)
    )
    torch.testing.assert_close(flow.log_prob(x), log_p, rtol=1e-5, atol=1e-5)
    bpd = F.bits_per_dim(flow.log_prob(x), (1, 2, 2))
    torch.testing.assert_close(bpd, -(log_p - 4 * math.log(256)) / (4 * math.log(2)), rtol=1e-5, atol=1e-5)
