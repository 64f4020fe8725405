"""Implicit Normalizing Flows (Lu et al., ICLR 2021): z + g_z(z) = x + g_x(x), two Lipschitz branches per block.

Published defaults. Toy (run_toy.sh): 6 blocks, branches SNLinear(128)-sin-SNLinear(128)-sin-SNLinear with
sin(2πx)/2π and no activation before the first layer, c = 0.99, 20 power iterations per step, exact log-det in
training. Images (run_cifar10.sh): 2-2-2 blocks of LipSwish 3-1-3 conv branches (512), c = 0.9, ActNorm, no
fully-connected end, roulette with Poisson(2) N, 10 exact terms and Rademacher probes. Solver: Broyden.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .common import option
from .lipschitz_flows import Activation, FamilyDefaults, LipschitzFlowConfig, register_lipschitz_family


@dataclass
class ImplicitConfig(LipschitzFlowConfig):
    hidden: tuple[int, ...] | None = option(None, "vectors: hidden widths of the MLP branches (null: 128, 128)")
    activation: Activation | None = option(None, "activation of the branches (null: sin toy, lipswish images)")
    probe: Literal["gaussian", "rademacher"] | None = option(
        None, "Hutchinson probes (null: gaussian toy, rademacher images)"
    )
    solver: Literal["anderson", "plain", "broyden"] = option("broyden", "root finder of the implicit map")
    solver_max_iter: int = option(200, "solver iteration cap (forward)")


register_lipschitz_family(
    "implicit",
    ImplicitConfig,
    defaults=FamilyDefaults(
        toy={
            "blocks": (6,),
            "hidden": (128, 128),
            "activation": "sin",
            "coeff": 0.99,
            "power_iterations": 20,
            "estimator": "exact",
            "probe": "gaussian",
        },
        image={
            "blocks": (2, 2, 2),
            "activation": "lipswish",
            "hidden": (128, 128),
            "coeff": 0.9,
            "fc_end": False,
            "n_exact_terms": 10,
            "probe": "rademacher",
        },
    ),
    branch="mlp",
    block="implicit",
    presets={
        "small": {"blocks": (3,), "hidden": (32, 32), "channels": 16},
        "digits": {"blocks": (2, 2), "channels": 32},
    },
    summary="implicit blocks (two residual branches), Broyden",
)
