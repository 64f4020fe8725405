"""Monotone block (Ahn et al., NeurIPS 2022): F(x) = ((Id + G)/2)^{-1}(x) − x with G(u) = √2·g(u/√2), Lip(g) < 1.

Solved in the √2-scaled variable w: forward w + g(w) = √2·x, y = √2·w − x; inverse w − g(w) = √2·y,
x = √2·w − y. The Jacobian is (I + J)^{-1}(I − J) with J = J_g(w), so
log|det ∂y/∂x| = log det(I − J) − log det(I + J) = Σ_{k odd} (−2/k)·tr(J^k): the shared power series with the
monotone coefficients, evaluated at w. Both solves run on a frozen copy of g; gradients come from implicit
differentiation (uᵀ(I + J_g(w*)) = ḡᵀ), never from the solver's iterations.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from ..layers.frozen import FrozenMirror
from ..logdet import MONOTONE_SERIES, LogDetConfig, PowerSeriesLogDet
from ..solvers import JacobianSlot, SolverConfig, implicit_resolvent
from .derivative_cache import derivative_cached
from .estimated import EstimatedLogDetBlock, Negated

SQRT2 = math.sqrt(2.0)


class MonotoneBlock(EstimatedLogDetBlock):
    """x → √2·w − x with w = (Id + g)^{-1}(√2·x); log-det by the monotone series at w."""

    def __init__(self, g: nn.Module, *, logdet: LogDetConfig, solver: SolverConfig) -> None:
        super().__init__(logdet, solver)
        self.g = g
        self.series = PowerSeriesLogDet(MONOTONE_SERIES, self.logdet_config)
        self.frozen_g = FrozenMirror()

    def estimators(self) -> list[PowerSeriesLogDet]:
        return [self.series]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        slot = JacobianSlot()
        frozen = derivative_cached(self.frozen_g.of(self.g, example_input=x))
        w, report = implicit_resolvent(self.g, frozen, SQRT2 * x, self.solver_config, jacobian=slot)
        self.solver_reports["forward"] = report
        _, logdet = self.estimate(self.series, self.g, w)
        # J_g(w*) if the log-det was exact: the backward then solves with it directly
        slot.value = getattr(self.series, "last_jacobian", None)
        return SQRT2 * w - x, logdet

    def inverse(self, y: Tensor) -> Tensor:
        w, report = implicit_resolvent(
            Negated(self.g), Negated(self.frozen_g.of(self.g, example_input=y)), SQRT2 * y, self.solver_config
        )
        self.solver_reports["inverse"] = report
        return SQRT2 * w - y
