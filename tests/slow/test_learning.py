"""Longer training checks (``make test-slow``): each family learns the toy densities and the digits images."""

from __future__ import annotations

import math

import pytest
import torch

import nflab.flows as F

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("family", ["nice", "realnvp", "glow", "maf"])
def test_family_learns_8gaussians(family: str) -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    flow = F.build(family, (2,), preset="small")
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
    test = F.data.sample_toy("8gaussians", 5000, generator=torch.Generator().manual_seed(1))
    for _ in range(3000):
        loss = -flow.log_prob(F.data.sample_toy("8gaussians", 256, generator=gen)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    flow.eval()
    with torch.no_grad():
        nats = -flow.log_prob(test).mean().item()
    # one Gaussian fitted to the mixture scores log(2πe·4.125) ≈ 4.25 nats; the published flows reach ≈ 2.84
    assert nats < 3.6, f"{family}: {nats:.3f} nats"


def test_glow_learns_digits() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    digits = F.data.load_images("digits")
    test = F.data.load_images("digits", "test")
    flow = F.build("glow", digits.shape, preset="small")
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
    x_test = F.data.uniform_dequantize(test.images, test.n_bins, generator=torch.Generator().manual_seed(1))
    before = F.bits_per_dim(flow.log_prob(x_test).mean(), digits.shape, n_bins=17).item()
    for _ in range(1500):
        batch = F.data.sample_batch(digits, 64, generator=gen)
        loss = -flow.log_prob(F.data.uniform_dequantize(batch, digits.n_bins, generator=gen)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    flow.eval()
    with torch.no_grad():
        after = F.bits_per_dim(flow.log_prob(x_test).mean(), digits.shape, n_bins=17).item()
    assert math.isfinite(after) and after < before - 1.0 and after < math.log2(17)
