"""Residual block y = x + g(x), Lip(g) < 1 (i-ResNet, Behrmann et al. 2019; Residual Flows, Chen et al. 2019).

log|det ∂y/∂x| = log det(I + J_g(x)) = Σ_k (−1)^{k+1}/k · tr(J_g^k), estimated by the shared power series;
the inverse solves x + g(x) = y by the fixed-point solver (Banach: x ← y − g(x)), Anderson-accelerated by default.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..layers.frozen import FrozenMirror
from ..logdet import RESIDUAL_SERIES, LogDetConfig, PowerSeriesLogDet
from ..solvers import SolverConfig, implicit_resolvent, resolvent
from .estimated import EstimatedLogDetBlock


class ResidualBlock(EstimatedLogDetBlock):
    """x → x + g(x) with an estimated (or exact) log det(I + J_g)."""

    def __init__(self, g: nn.Module, *, logdet: LogDetConfig, solver: SolverConfig) -> None:
        super().__init__(logdet, solver)
        self.g = g
        self.series = PowerSeriesLogDet(RESIDUAL_SERIES, self.logdet_config)
        self.frozen_g = FrozenMirror()

    def estimators(self) -> list[PowerSeriesLogDet]:
        return [self.series]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        gx, logdet = self.estimate(self.series, self.g, x)
        return x + gx, logdet

    def inverse(self, y: Tensor) -> Tensor:
        frozen = self.frozen_g.of(self.g, example_input=y)
        if torch.is_grad_enabled() and (y.requires_grad or any(p.requires_grad for p in self.g.parameters())):
            x, report = implicit_resolvent(self.g, frozen, y, self.solver_config)
        else:
            x, report = resolvent(frozen, y, self.solver_config)
        self.solver_reports["inverse"] = report
        return x
