"""Tests for nflab.flows.data toy densities, 1-D targets and dequantization."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nflab.flows import data
from nflab.flows.data.dequantize import sample_batch
from nflab.flows.data.images import ImageSet

N = 20_000


def _sample(name: str, n: int = N, seed: int = 0) -> torch.Tensor:
    return data.sample_toy(name, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.fixture(scope="module")
def samples() -> dict[str, torch.Tensor]:
    return {name: _sample(name) for name in data.TOY_DATASETS}


def test_names() -> None:
    assert data.TOY_DATASETS == (
        "8gaussians", "2spirals", "checkerboard", "circles", "moons", "pinwheel", "rings", "swissroll",
        "2gaussians",
    )  # fmt: skip
    assert data.available() == {
        "toy": data.TOY_DATASETS,
        "oned": ("multiplestepfunc", "impflowfunc"),
        "images": ("digits", "mnist", "cifar10", "imagenet32", "imagenet64"),
    }


@pytest.mark.parametrize("name", data.TOY_DATASETS)
@pytest.mark.parametrize("n", [1, 2, 3, 7, 101])
def test_exact_shape_and_dtype(name: str, n: int) -> None:
    x = data.sample_toy(name, n, generator=torch.Generator().manual_seed(1))
    assert x.shape == (n, 2)
    assert x.dtype == torch.float32
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("name", data.TOY_DATASETS)
def test_seeding(name: str) -> None:
    a, b, c = _sample(name, 500, 3), _sample(name, 500, 3), _sample(name, 500, 4)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"unknown toy dataset 'x'; allowed: 8gaussians, 2spirals, "):
        data.sample_toy("x", 10)
    for bad in (0, -3, 2.5, True, "10"):
        with pytest.raises(ValueError, match="positive int"):
            data.sample_toy("moons", bad)  # type: ignore[arg-type]


def test_checkerboard(samples: dict[str, torch.Tensor]) -> None:
    x = samples["checkerboard"]
    assert (x >= -4).all() and (x < 4).all()
    cells = torch.floor(x / 2).long()
    assert ((cells[:, 0] + cells[:, 1]) % 2 == 0).all()  # only the "even" cells are on
    key = (cells[:, 0] + 2) * 4 + (cells[:, 1] + 2)
    counts = torch.bincount(key, minlength=16).double() / len(x)
    on = counts[counts > 0]
    assert len(on) == 8
    assert torch.allclose(on, torch.full_like(on, 1 / 8), atol=0.02)
    # uniform inside a cell: position within the cell has mean ≈ 1 per axis
    assert torch.allclose((x - 2 * cells).mean(0), torch.ones(2, dtype=x.dtype), atol=0.03)


def test_eight_gaussians(samples: dict[str, torch.Tensor]) -> None:
    x = samples["8gaussians"]
    ang = torch.arange(8, dtype=x.dtype) * math.pi / 4
    centres = 4 / 1.414 * torch.stack([torch.cos(ang), torch.sin(ang)], 1)
    idx = torch.cdist(x, centres).argmin(1)
    frac = torch.bincount(idx, minlength=8).double() / len(x)
    assert torch.allclose(frac, torch.full_like(frac, 1 / 8), atol=0.015)
    std = (x - centres[idx]).std(0)
    assert torch.allclose(std, torch.full_like(std, 0.5 / 1.414), rtol=0.1)


def test_rings(samples: dict[str, torch.Tensor]) -> None:
    r = samples["rings"].norm(dim=1)
    radii = torch.tensor([3.0, 2.25, 1.5, 0.75], dtype=r.dtype)
    dist = (r[:, None] - radii).abs()
    assert (dist.min(1).values < 0.3).double().mean() > 0.999
    frac = torch.bincount(dist.argmin(1), minlength=4).double() / len(r)
    assert torch.allclose(frac, torch.full_like(frac, 0.25), atol=0.01)


def test_circles(samples: dict[str, torch.Tensor]) -> None:
    r = samples["circles"].norm(dim=1)
    outer = r > 2.25
    assert abs(outer.double().mean().item() - 0.5) < 0.01
    assert abs(r[outer].median().item() - 3.0) < 0.05
    assert abs(r[~outer].median().item() - 1.5) < 0.05
    assert r.max() < 3 + 6 * 0.24


def test_moons(samples: dict[str, torch.Tensor]) -> None:
    x = samples["moons"]
    # exact means: x̄ = 0, ȳ = ½[(2·2/π − .2) + (2(½ − 2/π) − .2)] = 0.3
    assert torch.allclose(x.mean(0), torch.tensor([0.0, 0.3], dtype=x.dtype), atol=0.03)
    lo, hi = torch.quantile(x, torch.tensor([0.002, 0.998], dtype=x.dtype), dim=0)
    assert -3.6 < lo[0] < -2.6 and 2.6 < hi[0] < 3.6
    assert -1.7 < lo[1] < -0.9 and 1.5 < hi[1] < 2.3


def test_swissroll(samples: dict[str, torch.Tensor]) -> None:
    r = samples["swissroll"].norm(dim=1)
    q = torch.quantile(r, torch.tensor([0.001, 0.999], dtype=r.dtype))
    # t ∈ [1.5π, 4.5π] → radius [0.94, 2.83] before N(0, 0.2²) noise per coordinate
    assert 0.2 < q[0] < 1.0 and 2.8 < q[1] < 3.6
    assert abs(r.median().item() - 1.885) < 0.1  # t is uniform: median radius ≈ 3π/5


@pytest.mark.parametrize("name", ["swissroll", "circles", "moons"])
def test_matches_sklearn_generators(name: str, samples: dict[str, torch.Tensor]) -> None:
    """Quantiles agree with the FFJORD recipe built on sklearn's own generators."""
    from sklearn import datasets

    rng = np.random.RandomState(0)
    if name == "swissroll":
        ref = datasets.make_swiss_roll(N, noise=1.0, random_state=rng)[0][:, [0, 2]] / 5
    elif name == "circles":
        ref = datasets.make_circles(N, factor=0.5, noise=0.08, random_state=rng)[0] * 3
    else:
        ref = datasets.make_moons(N, noise=0.1, random_state=rng)[0] * 2 + np.array([-1, -0.2])
    qs = torch.linspace(0.01, 0.99, 21, dtype=torch.float64)
    ours = torch.quantile(samples[name], qs, dim=0)
    theirs = torch.quantile(torch.from_numpy(ref), qs, dim=0)
    assert torch.allclose(ours, theirs, atol=0.08), (ours - theirs).abs().max()


def test_two_spirals(samples: dict[str, torch.Tensor]) -> None:
    x = samples["2spirals"]
    assert x.mean(0).abs().max() < 0.03
    assert (x**3).mean(0).abs().max() < 0.1  # point-symmetric: odd moments vanish
    qs = torch.linspace(0.01, 0.99, 25, dtype=x.dtype)
    assert torch.allclose(torch.quantile(x, qs, dim=0), torch.quantile(-x, qs, dim=0), atol=0.06)
    r = x.norm(dim=1)
    assert r.max() < (3 * math.pi + 0.5 * math.sqrt(2)) / 3 + 0.5
    assert torch.quantile(r, 0.99) > 2.8


def test_pinwheel(samples: dict[str, torch.Tensor]) -> None:
    x = samples["pinwheel"]
    assert x.mean(0).abs().max() < 0.03
    assert x.norm(dim=1).max() < 2 * (1 + 6 * 0.3) + 0.5
    theta = torch.atan2(x[:, 1], x[:, 0])
    moment = [torch.polar(torch.ones_like(theta), k * theta).mean().abs().item() for k in range(1, 6)]
    assert max(moment[:4]) < 0.04  # five-fold rotational symmetry ...
    assert moment[4] > 0.3  # ... with five concentrated arms


# ----------------------------------------------------------------------------------------------- 1-D


def test_oned_values() -> None:
    f = data.target_function("multiplestepfunc")
    x = torch.tensor([-2.0, 2.0, -1.0, 0.0, 0.5, 1.975], dtype=torch.float64)
    # t(w)=0 for w≤0, =0.05w on [0, .95], rises to 1 on [.95, 1]; so f(-1)=t(1)=1, f(0)=t(2)+t(1)=2,
    # f(.5)=t(2.5)+t(1.5)+t(.5)=2.025, f(1.975)=3+t(.975)=3+0.5
    expected = torch.tensor([0.0, 4.0, 1.0, 2.0, 2.025, 3.5], dtype=torch.float64)
    assert torch.allclose(f(x), expected, atol=1e-12)
    g = data.target_function("impflowfunc")
    assert torch.allclose(g(torch.tensor([0.5, -0.5, 0.0])), torch.tensor([5.0, -0.05, 0.0]))
    with pytest.raises(ValueError, match="allowed: multiplestepfunc, impflowfunc"):
        data.target_function("nope")


@pytest.mark.parametrize("name,lo,hi", [("multiplestepfunc", -2.0, 2.0), ("impflowfunc", -1.0, 1.0)])
def test_sample_1d(name: str, lo: float, hi: float) -> None:
    x, y = data.sample_1d(name, 1000, linspace=True)
    assert x.shape == y.shape == (1000, 1)
    assert x[0, 0] == lo and x[-1, 0] == hi
    assert (torch.diff(y[:, 0]) >= 0).all()  # monotone non-decreasing targets
    a, ya = data.sample_1d(name, 500, generator=torch.Generator().manual_seed(0))
    b, _ = data.sample_1d(name, 500, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and (a >= lo).all() and (a < hi).all()
    assert torch.allclose(ya, data.target_function(name)(a))


# ----------------------------------------------------------------------------------------------- dequantize


@pytest.mark.parametrize("n_bins", [256, 17, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uniform_dequantize(n_bins: int, dtype: torch.dtype) -> None:
    k = torch.arange(n_bins, dtype=torch.uint8 if n_bins <= 256 else torch.int64).repeat(4000)
    x = data.uniform_dequantize(k, n_bins, generator=torch.Generator().manual_seed(0), dtype=dtype)
    assert x.dtype == dtype and x.shape == k.shape
    assert (x >= 0).all() and (x < 1).all()
    assert torch.equal(torch.floor(x * n_bins).long(), k.long())
    again = data.uniform_dequantize(k, n_bins, generator=torch.Generator().manual_seed(0), dtype=dtype)
    assert torch.equal(x, again)
    frac = x * n_bins - k.to(dtype)  # the uniform noise: mean ½
    assert abs(frac.mean().item() - 0.5) < 0.02


def test_dequantize_edge_of_bin_stays_inside() -> None:
    """u close to 1 would round k+u up to k+1 in float32; the result must stay in bin k."""
    k = torch.full((200_000,), 255, dtype=torch.uint8)
    x = data.uniform_dequantize(k, 256, generator=torch.Generator().manual_seed(1))
    assert (x < 1).all() and (torch.floor(x * 256) == 255).all()


def test_dequantize_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="pixel levels"):
        data.uniform_dequantize(torch.tensor([17], dtype=torch.uint8), 17)
    with pytest.raises(ValueError, match="integer"):
        data.uniform_dequantize(torch.tensor([0.5]), 17)


def test_sample_batch() -> None:
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    ds = ImageSet(images, torch.arange(10), n_bins=256)
    a = sample_batch(ds, 64, generator=torch.Generator().manual_seed(0))
    b = sample_batch(ds, 64, generator=torch.Generator().manual_seed(0))
    assert a.shape == (64, 1, 2, 2) and a.dtype == torch.uint8 and torch.equal(a, b)
    assert len(torch.unique(a)) > 5
