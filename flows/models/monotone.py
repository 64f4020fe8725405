"""Monotone Flows (Ahn et al., NeurIPS 2022): monotone-operator blocks with CPila dense branches.

Published defaults. Toy (``build("monotone", (2,))``): 10 blocks, dense CPila branch of depth 3 and growth 16,
c = 0.9, learnable concatenation 0.98 from step 25000, exact 2×2 log-det in training (the paper's
``--brute-force True``), Anderson-accelerated fixed point (1e-6, ≤ 2000) and implicit backward (1e-9, ≤ 100).
Images (CIFAR-10): 16-16-16 blocks of growth 172, c = 0.98, roulette with Poisson(2) N and 10 exact terms, Neumann
gradient, memory-efficient backward, ActNorm, dense fully-connected end blocks. TF32 is switched off by the trainer.
Per dataset (the README's commands; Table 2's parameter counts): ``mnist`` (α = 1e-6, no memory-efficient backward;
20.9 M), ``cifar10`` (24.9 M), ``imagenet32`` (32-32-32 blocks, concatenation learnable from the start; 47.0 M),
``imagenet64`` (as ImageNet32, squeeze first and factor out; 48.9 M).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .common import option
from .idensenet import DENSE_DIGITS, DENSE_SMALL
from .lipschitz_flows import Activation, DenseBranch, LipschitzFlowConfig, dataset_presets, register_lipschitz_family


@dataclass
class MonotoneConfig(DenseBranch, LipschitzFlowConfig):
    blocks: tuple[int, ...] = option((10,), "vectors: (n,) blocks; images: blocks per scale", ge=1)
    activation: Activation = option(
        "cpila", "activation of the dense branch (CPila: k, shift tunable)", spaces=("activation",)
    )
    estimator: Literal["exact", "truncated", "roulette"] = option(
        "exact", "log-det estimator in training (toy: the exact 2×2 log-det, the paper's --brute-force)",
        spaces=("estimator",),
    )  # fmt: skip


PUBLISHED = dataset_presets("dense", n_exact_terms=10)
PUBLISHED["mnist"] = PUBLISHED["mnist"] | {"memory_efficient": False}  # the README's MNIST command: --mem-eff False
PUBLISHED["imagenet32"] = PUBLISHED["imagenet32"] | {"start_learnable_concat": 0}
PUBLISHED["imagenet64"] = PUBLISHED["imagenet64"] | {"start_learnable_concat": 0}

register_lipschitz_family(
    "monotone",
    MonotoneConfig,
    branch="dense",
    block="monotone",
    presets={**PUBLISHED, "small": DENSE_SMALL, "digits": DENSE_DIGITS},
    summary="monotone-operator blocks, CPila, implicit differentiation",
)
