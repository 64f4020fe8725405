"""MAF (Papamakarios, Pavlakou & Murray 2017): a stack of MADE-parametrised affine autoregressive layers with
order reversals in between; ``orientation="iaf"`` gives the inverse autoregressive flow (Kingma et al. 2016).

Published MNIST setting: 5 layers, MADE with one hidden layer of 1024 ReLU units, logit preprocessing
(α = 1e-6 on MNIST). The paper's batch-norm layers between MADEs are not included (a documented difference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ..layers import Flattened, MaskedAutoregressive, Permutation
from ..registry import register
from ..transform import Compose, Transform
from .common import Preprocess, Search, option, preprocessing


@dataclass
class MAFConfig:
    layers: int = option(5, "number of MADE layers", ge=1, le=1000, search=Search(2, 10), spaces=("architecture",))
    hidden: tuple[int, ...] = option((1024,), "hidden widths of each MADE", ge=1, le=65536)
    orientation: Literal["maf", "iaf"] = option("maf", "maf: one-pass density; iaf: one-pass sampling")
    preprocess: Preprocess = option("logit", "image preprocessing layer (images only)")
    alpha: float = option(0.05, "logit α (1e-6 MNIST, 0.05 CIFAR)", ge=0, lt=0.5)


@register("maf", MAFConfig, presets={"small": {"hidden": (64, 64)}}, summary="masked autoregressive flow")
def build_maf(shape: tuple[int, ...], cfg: MAFConfig) -> Transform:
    dim = math.prod(shape)
    layers: list[Transform] = []
    for i in range(cfg.layers):
        if i > 0:
            layers.append(Permutation.reverse(dim))
        layers.append(MaskedAutoregressive(dim, cfg.hidden, orientation=cfg.orientation))
    body: Transform = Compose(*layers)
    if len(shape) == 1:
        return body
    pre = preprocessing(cfg.preprocess, cfg.alpha)
    return Compose(*([pre] if pre else []), Flattened(body, shape))
