"""Glow (Kingma & Dhariwal 2018): steps of ActNorm → invertible 1×1 conv → affine coupling (scale sigmoid(h + 2)).

Images: L levels of [squeeze, K steps, split with a learned conditional prior], a learned top prior; data
centred by −½. Published CIFAR-10 setting: L = 3, K = 32, width 512, affine coupling, learned top prior.
The field defaults are that model (also used for MNIST); ``imagenet32`` (K = 48) and ``imagenet64`` (K = 48, L = 4)
are the README's ImageNet commands. Vectors: K steps of ActNorm → invertible linear map → affine coupling with an MLP
conditioner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..layers import (
    ActNorm,
    FactorOut,
    InvertibleLinear,
    LearnedGaussian,
    MaskedCoupling,
    SplitPrior,
    Squeezed,
    channel_mask,
    half_mask,
)
from ..layers.coupling import coupling_sizes
from ..layers.nets import glow_net, mlp
from ..registry import register
from ..transform import Compose, Transform
from .common import Preprocess, Search, halvings, option, preprocessing, require


@dataclass
class GlowConfig:
    levels: int = option(3, "images: number of levels L (each squeezes; all but the last split)", ge=1, le=16)
    depth: int = option(
        32,
        "flow steps K per level (vectors: total steps)",
        ge=1,
        le=1000,
        search=Search(2, 32),
        spaces=("architecture",),
    )
    width: int = option(512, "hidden channels of the coupling network", ge=1, le=65536)
    hidden: tuple[int, ...] = option((512, 512), "vectors: hidden widths of the MLP conditioner", ge=1, le=65536)
    coupling: Literal["affine", "additive"] = option("affine", "affine (sigmoid(h + 2) scale) or additive")
    lu: bool = option(False, "LU-parametrised 1×1 convolution")
    learn_top: bool = option(True, "learned top prior (images)")
    preprocess: Preprocess = option("shift", "image preprocessing layer (Glow: x − ½)")
    alpha: float = option(0.05, "logit α (preprocess=logit)", ge=0, lt=0.5)


def _step(shape: tuple[int, ...], cfg: GlowConfig) -> Compose:
    c = shape[0]
    scale = "sigmoid" if cfg.coupling == "affine" else "additive"
    n_out = 2 * c if scale == "sigmoid" else c
    if len(shape) == 1:
        mask = half_mask(c, True)
        d_a, d_b = coupling_sizes(mask)
        net = mlp(d_a, cfg.hidden, d_b if scale == "additive" else 2 * d_b)
    else:
        mask, net = channel_mask(shape, True), glow_net(c, n_out, cfg.width)
    return Compose(ActNorm(c), InvertibleLinear(c, lu=cfg.lu), MaskedCoupling(mask, net, scale=scale))  # type: ignore[arg-type]


def _level(shape: tuple[int, int, int], index: int, n_levels: int, cfg: GlowConfig) -> Transform:
    c, h, w = shape
    sq = (4 * c, h // 2, w // 2)
    steps = [_step(sq, cfg) for _ in range(cfg.depth)]
    if index == n_levels - 1:
        top = [LearnedGaussian(sq)] if cfg.learn_top else []
        return Squeezed(Compose(*steps, *top))
    inner = _level((2 * c, h // 2, w // 2), index + 1, n_levels, cfg)
    return Squeezed(Compose(*steps, FactorOut(inner, SplitPrior(2 * c, 2 * c))))


@register(
    "glow",
    GlowConfig,
    presets={
        "small": {"levels": 2, "depth": 4, "width": 32, "hidden": (64, 64)},
        "imagenet32": {"levels": 3, "depth": 48},  # the README's ImageNet commands: K = 48 (L = 3 / 4)
        "imagenet64": {"levels": 4, "depth": 48},
    },
    summary="actnorm + 1x1 conv + affine coupling, multi-scale",
)
def build_glow(shape: tuple[int, ...], cfg: GlowConfig) -> Transform:
    if len(shape) == 1:
        require(shape[0] >= 2, "shape", shape, "(d,) with d >= 2")
        return Compose(*[_step(shape, cfg) for _ in range(cfg.depth)])
    c, h, w = shape
    n_levels = min(cfg.levels, halvings(h, w))
    require(n_levels >= 1, "shape", shape, "an image with even height and width")
    pre = preprocessing(cfg.preprocess, cfg.alpha)
    return Compose(*([pre] if pre else []), _level((c, h, w), 0, n_levels, cfg))
