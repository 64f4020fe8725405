"""Monotone Flows (Ahn et al., NeurIPS 2022): monotone-operator blocks with CPila dense branches.

Published defaults. Toy (``build("monotone", (2,))``): 10 blocks, dense CPila branch of depth 3 and growth 16,
c = 0.9, learnable concatenation 0.98 from step 25000, exact 2×2 log-det in training (the paper's
``--brute-force True``), Anderson-accelerated fixed point (1e-6, ≤ 2000) and implicit backward (1e-9, ≤ 100).
Images (CIFAR-10): 16-16-16 blocks of growth 172, c = 0.98, roulette with Poisson(2) N and 10 exact terms, Neumann
gradient, memory-efficient backward, ActNorm, dense fully-connected end blocks. TF32 is switched off by the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass

from .common import option
from .idensenet import DENSE_DIGITS, DENSE_SMALL
from .lipschitz_flows import Activation, FamilyDefaults, LipschitzFlowConfig, register_lipschitz_family


@dataclass
class MonotoneConfig(LipschitzFlowConfig):
    activation: Activation = option("cpila", "activation of the dense branch (CPila: k, shift tunable)")


register_lipschitz_family(
    "monotone",
    MonotoneConfig,
    defaults=FamilyDefaults(
        toy={"blocks": (10,), "estimator": "exact"}, image={"blocks": (16, 16, 16), "n_exact_terms": 10}
    ),
    branch="dense",
    block="monotone",
    presets={"small": DENSE_SMALL, "digits": DENSE_DIGITS},
    summary="monotone-operator blocks, CPila, implicit differentiation",
)
