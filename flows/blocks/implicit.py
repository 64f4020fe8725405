"""Implicit block (Lu et al., ICLR 2021): z = (Id + g_z)^{-1}((Id + g_x)(x)), Lip(g_x), Lip(g_z) < 1.

log|det ∂z/∂x| = log det(I + J_{g_x}(x)) − log det(I + J_{g_z}(z)), each by the shared residual power series
(independent probes). z solves z + g_z(z) = x + g_x(x) (Broyden or the accelerated fixed point, on a frozen copy of
g_z) with implicit differentiation; the inverse solves x + g_x(x) = z + g_z(z) the same way.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..layers.frozen import FrozenMirror
from ..logdet import RESIDUAL_SERIES, LogDetConfig, PowerSeriesLogDet
from ..solvers import JacobianSlot, SolverConfig, implicit_resolvent
from .derivative_cache import derivative_cached
from .estimated import EstimatedLogDetBlock


class ImplicitBlock(EstimatedLogDetBlock):
    """x → z with z + g_z(z) = x + g_x(x)."""

    def __init__(self, g_x: nn.Module, g_z: nn.Module, *, logdet: LogDetConfig, solver: SolverConfig) -> None:
        super().__init__(logdet, solver)
        self.g_x, self.g_z = g_x, g_z
        self.series_x = PowerSeriesLogDet(RESIDUAL_SERIES, self.logdet_config)
        self.series_z = PowerSeriesLogDet(RESIDUAL_SERIES, self.logdet_config)
        self.frozen_x, self.frozen_z = FrozenMirror(), FrozenMirror()

    def estimators(self) -> list[PowerSeriesLogDet]:
        return [self.series_x, self.series_z]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        gx, logdet_x = self.estimate(self.series_x, self.g_x, x)
        slot = JacobianSlot()
        frozen = derivative_cached(self.frozen_z.of(self.g_z, example_input=x))
        z, report = implicit_resolvent(self.g_z, frozen, x + gx, self.solver_config, jacobian=slot)
        self.solver_reports["forward"] = report
        _, logdet_z = self.estimate(self.series_z, self.g_z, z)
        # J_gz(z*) if the log-det was exact: the backward then solves with it directly
        slot.value = getattr(self.series_z, "last_jacobian", None)
        return z, logdet_x - logdet_z

    def inverse(self, z: Tensor) -> Tensor:
        x, report = implicit_resolvent(
            self.g_x, self.frozen_x.of(self.g_x, example_input=z), z + self.g_z(z), self.solver_config
        )
        self.solver_reports["inverse"] = report
        return x
