"""Residual Flows (Chen et al., NeurIPS 2019): y = x + g(x) with LipSwish branches and an unbiased log-det.

Published defaults. Toy: 100 blocks, g = [LipSwish → SNLinear] × 5 (widths 128), c = 0.9, Russian roulette
(geometric p = ½, 2 exact terms), 5 power iterations per step. Images (``cifar10``): 16-16-16 blocks of
LipSwish-SNConv3×3(512)-LipSwish-SNConv1×1-LipSwish-SNConv3×3 with ActNorm, 4 fully-connected end blocks (128),
c = 0.98, roulette with Poisson(2) N and 2 exact terms, Neumann gradient and the memory-efficient backward, logit
α = 0.05; power iterations to tolerance 1e-3 after each step. ``mnist`` (α = 1e-6; 16.6 M parameters on 28×28),
``imagenet32`` (32-32-32 blocks) and ``imagenet64`` (32-32-32, squeeze first, factor out) are the paper's commands.
"""

from __future__ import annotations

from dataclasses import dataclass

from .lipschitz_flows import LipschitzFlowConfig, MLPBranch, dataset_presets, register_lipschitz_family


@dataclass
class ResFlowConfig(MLPBranch, LipschitzFlowConfig):
    pass


SMALL = {"blocks": (4,), "hidden": (32, 32), "channels": 16, "fc_blocks": 1, "fc_hidden": 16}
DIGITS = {"blocks": (2, 2), "channels": 32, "fc_blocks": 2, "fc_hidden": 64}

register_lipschitz_family(
    "resflow",
    ResFlowConfig,
    branch="mlp",
    block="residual",
    presets={**dataset_presets("mlp"), "small": SMALL, "digits": DIGITS},
    summary="residual blocks, LipSwish, Russian-roulette log-det",
)
