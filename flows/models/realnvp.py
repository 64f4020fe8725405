"""RealNVP (Dinh, Sohl-Dickstein & Bengio 2017): affine couplings y_B = (x_B + t)·e^{γ·tanh(s)}.

Vectors: alternating (or fixed-half) masks with MLP conditioners. Images: the multi-scale recursion — per
scale 3 checkerboard couplings, squeeze, 3 channel couplings, factor out half; the last scale 4 checkerboard
couplings; conditioner width doubles per scale (published: 4 scales, base width 32, 2 residual blocks,
logit preprocessing with α = 0.05). ``conditioner="linear"`` with ``mask="half"`` and ``scale="exp"`` is
Koehler et al.'s construction (affine couplings with linear s and t on a fixed partition).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..layers import FactorOut, MaskedCoupling, Squeezed, channel_mask, checkerboard_mask
from ..layers.nets import MaskedConvResNet
from ..registry import register
from ..transform import Compose, Transform
from .common import Preprocess, Search, halvings, option, preprocessing, require
from .nice import coupling_stack


@dataclass
class RealNVPConfig:
    couplings: int = option(
        8, "vectors: number of affine couplings", ge=1, le=1000, search=Search(2, 16), spaces=("architecture",)
    )
    hidden: tuple[int, ...] = option((256, 256), "vectors: hidden widths of the MLP conditioner", ge=1, le=65536)
    mask: Literal["alternate", "half"] = option("alternate", "vectors: odd/even or a fixed first/second half")
    conditioner: Literal["mlp", "linear"] = option("mlp", "vectors: MLP or linear s and t (Koehler et al.)")
    scale: Literal["tanh", "exp", "sigmoid"] = option("tanh", "log-scale γ·tanh(s), raw s, or sigmoid(s + 2)")
    scales: int = option(4, "images: number of scales of the multi-scale recursion", ge=1, le=16)
    width: int = option(32, "images: conditioner width at the first scale (doubles per scale)", ge=1, le=65536)
    res_blocks: int = option(2, "images: residual blocks per conditioner", ge=0, le=100)
    preprocess: Preprocess = option("logit", "image preprocessing layer")
    alpha: float = option(0.05, "logit α (0.05 CIFAR/ImageNet, 1e-6 MNIST)", ge=0, lt=0.5)


def _image_coupling(mask, cfg: RealNVPConfig, width: int) -> MaskedCoupling:
    c = mask.shape[0]
    return MaskedCoupling(mask, MaskedConvResNet(mask, 2 * c, width, cfg.res_blocks), scale=cfg.scale)


def _scale(shape: tuple[int, int, int], index: int, n_scales: int, cfg: RealNVPConfig) -> Transform:
    c, h, w = shape
    width = cfg.width * 2**index
    if index == n_scales - 1:
        return Compose(*[_image_coupling(checkerboard_mask(shape, i % 2), cfg, width) for i in range(4)])
    board = [_image_coupling(checkerboard_mask(shape, i % 2), cfg, width) for i in range(3)]
    sq = (4 * c, h // 2, w // 2)
    chan = [_image_coupling(channel_mask(sq, i % 2 == 0), cfg, width) for i in range(3)]
    inner = _scale((2 * c, h // 2, w // 2), index + 1, n_scales, cfg)
    return Compose(*board, Squeezed(Compose(*chan, FactorOut(inner))))


@register(
    "realnvp",
    RealNVPConfig,
    presets={"small": {"couplings": 6, "hidden": (64, 64), "scales": 2, "width": 16, "res_blocks": 1}},
    summary="affine coupling, multi-scale",
)
def build_realnvp(shape: tuple[int, ...], cfg: RealNVPConfig) -> Transform:
    if len(shape) == 1:
        dim = shape[0]
        require(dim >= 2, "shape", shape, "(d,) with d >= 2")
        hidden = () if cfg.conditioner == "linear" else cfg.hidden
        return Compose(*coupling_stack(dim, cfg.couplings, cfg.mask, hidden, cfg.scale))
    c, h, w = shape
    n_scales = min(cfg.scales, 1 + halvings(h, w, min_size=2))
    pre = preprocessing(cfg.preprocess, cfg.alpha)
    return Compose(*([pre] if pre else []), _scale((c, h, w), 0, n_scales, cfg))
