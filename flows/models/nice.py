"""NICE (Dinh, Krueger & Bengio 2015): additive couplings x_B += m(x_A) and a diagonal scaling z = x·e^s.

Published MNIST setting: 4 couplings with alternating (odd/even) partitions, m a ReLU MLP with 5 hidden
layers of 1000 units, then the scaling layer. Images are flattened (NICE is a vector model). The paper's
logistic prior is replaced by nflab's standard normal base (a documented difference).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..layers import DiagonalScaling, Flattened, MaskedCoupling, alternating_mask, half_mask
from ..layers.coupling import coupling_sizes
from ..layers.nets import mlp
from ..registry import register
from ..transform import Compose, Transform
from .common import Preprocess, Search, option, preprocessing, require


@dataclass
class NICEConfig:
    couplings: int = option(
        4, "number of additive coupling layers", ge=1, le=1000, search=Search(2, 12), spaces=("architecture",)
    )
    hidden: tuple[int, ...] = option((1000,) * 5, "hidden widths of each coupling's ReLU MLP", ge=1, le=65536)
    mask: Literal["alternate", "half"] = option("alternate", "partition: odd/even coordinates or first/second half")
    preprocess: Preprocess = option("none", "image preprocessing layer (images only)")
    alpha: float = option(0.05, "logit α (preprocess=logit)", ge=0, lt=0.5)


def coupling_stack(dim: int, n: int, mask: str, hidden: Sequence[int], scale: str) -> list[Transform]:
    """n couplings on a d-vector whose masks alternate sides, MLP conditioners d_A → d_B (additive) or 2·d_B
    (shared by NICE and the vector RealNVP)."""
    out: list[Transform] = []
    for i in range(n):
        m = alternating_mask(dim, i % 2) if mask == "alternate" else half_mask(dim, i % 2 == 0)
        d_a, d_b = coupling_sizes(m)
        net = mlp(d_a, hidden, d_b if scale == "additive" else 2 * d_b)
        out.append(MaskedCoupling(m, net, scale=scale))  # type: ignore[arg-type]
    return out


@register("nice", NICEConfig, presets={"small": {"hidden": (64, 64)}}, summary="additive coupling + scaling")
def build_nice(shape: tuple[int, ...], cfg: NICEConfig) -> Transform:
    dim = math.prod(shape)
    require(dim >= 2, "shape", shape, "a shape with at least 2 elements")
    layers = coupling_stack(dim, cfg.couplings, cfg.mask, cfg.hidden, "additive")
    body: Transform = Compose(*layers, DiagonalScaling((dim,)))
    if len(shape) == 1:
        return body
    pre = preprocessing(cfg.preprocess, cfg.alpha)
    return Compose(*([pre] if pre else []), Flattened(body, shape))
