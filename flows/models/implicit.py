"""Implicit Normalizing Flows (Lu et al., ICLR 2021): z + g_z(z) = x + g_x(x), two Lipschitz branches per block.

Published defaults. Toy (run_toy.sh): 6 blocks, branches SNLinear(128)-sin-SNLinear(128)-sin-SNLinear with
sin(2πx)/2π and no activation before the first layer, c = 0.99, 20 power iterations per step, exact log-det in
training. Images (run_cifar10.sh): 2-2-2 blocks of LipSwish 3-1-3 conv branches (512), c = 0.9, ActNorm, no
fully-connected end, roulette with Poisson(2) N, 10 exact terms and Rademacher probes. Solver: Broyden.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .common import Search, option
from .lipschitz_flows import Activation, LipschitzFlowConfig, MLPBranch, images_preset, register_lipschitz_family


@dataclass
class ImplicitConfig(MLPBranch, LipschitzFlowConfig):
    blocks: tuple[int, ...] = option((6,), "vectors: (n,) blocks; images: blocks per scale", ge=1)
    hidden: tuple[int, ...] = option((128, 128), "vectors: hidden widths of the MLP branches", ge=1, le=65536)
    activation: Activation = option(
        "sin", "activation of the branches (sin(2πx)/2π on toy data)", spaces=("activation",)
    )
    coeff: float = option(0.99, "Lipschitz coefficient c of every layer", gt=0, lt=1, search=Search(0.5, 0.99),
                          spaces=("lipschitz",))  # fmt: skip
    power_iterations: int | None = option(
        20, "power iterations after each step (null: to power_tol)", ge=1, le=1000, search=Search(1, 40),
        spaces=("lipschitz",),
    )  # fmt: skip
    estimator: Literal["exact", "truncated", "roulette"] = option(
        "exact", "log-det estimator in training", spaces=("estimator",)
    )
    solver: Literal["anderson", "plain", "broyden"] = option("broyden", "root finder of the implicit map")
    solver_max_iter: int = option(200, "solver iteration cap (forward)", ge=1, le=10**6)


register_lipschitz_family(
    "implicit",
    ImplicitConfig,
    branch="mlp",
    block="implicit",
    presets={
        "cifar10": images_preset(
            "mlp",
            blocks=(2, 2, 2),
            activation="lipswish",
            coeff=0.9,
            fc_end=False,
            n_exact_terms=10,
            probe="rademacher",
        ),
        "small": {"blocks": (3,), "hidden": (32, 32), "channels": 16},
        "digits": {"blocks": (2, 2), "channels": 32},
    },
    summary="implicit blocks (two residual branches), Broyden",
)
