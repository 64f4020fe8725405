"""Invertible DenseNets (Perugachi-Diaz et al., 2021): residual blocks whose branch is a Lipschitz dense net.

Branch: depth × [SN(total → growth/2) → CLipSwish → learnable concatenation η₁x ⊕ η₂·out, η₁² + η₂² = 0.98²],
then SN(total → d). Published defaults: CLipSwish, depth 3, c as Residual Flows (0.9 toy, 0.98 images), the same
estimators. Toy: 10 blocks of growth 16 with the concatenation learnable from step 25000 (the protocol of the
Monotone Flows comparison, E2; the original toy script stacks 100). Images: 16-16-16 blocks of growth 172, dense
fully-connected end blocks (growth 32), concatenation learnable after 25 epochs (19550 steps of CIFAR-10 at 64);
``imagenet32``: 32-32-32 blocks (the Residual Flows command i-DenseNets kept).
"""

from __future__ import annotations

from dataclasses import dataclass

from .common import option
from .lipschitz_flows import Activation, DenseBranch, LipschitzFlowConfig, dataset_presets, register_lipschitz_family


@dataclass
class IDenseNetConfig(DenseBranch, LipschitzFlowConfig):
    blocks: tuple[int, ...] = option((10,), "vectors: (n,) blocks; images: blocks per scale", ge=1)
    activation: Activation = option("clipswish", "activation of the dense branch", spaces=("activation",))


DENSE_SMALL = {"blocks": (4,), "dense_growth": 8, "fc_blocks": 1, "fc_dense_growth": 8, "start_learnable_concat": 0}
DENSE_DIGITS = {"blocks": (2, 2), "dense_growth": 32, "fc_blocks": 2, "fc_dense_growth": 16}

register_lipschitz_family(
    "idensenet",
    IDenseNetConfig,
    branch="dense",
    block="residual",
    presets={**dataset_presets("dense", ("imagenet32",)), "small": DENSE_SMALL, "digits": DENSE_DIGITS},
    summary="residual blocks with dense CLipSwish branches",
)
