"""Invertible ResNets (Behrmann et al., ICML 2019): y = x + g(x), ELU branches, truncated (biased) log-det series.

Published defaults: spectral coefficient 0.9, ELU, log-det by the first 5 series terms with one Gaussian probe,
5 power iterations per step. Images: a squeeze first, 16-16-16 blocks of SNConv3×3(512)-ELU-SNConv1×1-ELU-
SNConv3×3 with ActNorm, half the channels factored out after each non-last scale, a learned Gaussian prior over the
latent, data centred by −½ (no logit). Toy: 100 blocks with 4 hidden layers of 128 (the Residual Flows toy shape).
ActNorm follows each block here (the paper puts it before; the stack differs only at its two ends).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .common import Preprocess, option
from .lipschitz_flows import Activation, LipschitzFlowConfig, MLPBranch, dataset_presets, register_lipschitz_family


@dataclass
class IResNetConfig(MLPBranch, LipschitzFlowConfig):
    activation: Activation = option("elu", "activation of the branch", spaces=("activation",))
    estimator: Literal["exact", "truncated", "roulette"] = option(
        "truncated", "log-det estimator in training (i-ResNet: the truncated series, biased)", spaces=("estimator",)
    )
    factor_out: bool = option(True, "images: factor out half the channels after each non-last scale")
    squeeze_first: bool = option(True, "images: squeeze before the first scale")
    learned_prior: bool = option(True, "images: learned Gaussian prior over the latent")
    preprocess: Preprocess = option("shift", "image preprocessing layer (i-ResNet: x − ½)")


register_lipschitz_family(
    "iresnet",
    IResNetConfig,
    branch="mlp",
    block="residual",
    presets={
        # i-ResNet keeps c = 0.9, 5 power iterations, no fully-connected end and the plain gradient on images
        **dataset_presets(
            "mlp",
            (),  # MNIST: the same model (i-ResNet preprocesses by a shift, no logit α)
            coeff=0.9,
            power_iterations=5,
            power_tol=None,
            fc_end=False,
            estimator="truncated",
            neumann_grad=False,
            memory_efficient=False,
        ),
        "small": {"blocks": (4,), "hidden": (32, 32), "channels": 16},
        "digits": {"blocks": (2, 2), "channels": 32},
    },
    summary="residual blocks, ELU, truncated log-det series",
)
