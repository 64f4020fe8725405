"""Solver outcomes: a report for every solve, and an error — never a silent answer — when a solve fails.

The residual is the convergence measure of :func:`fixed_point`: max over the batch of |Δ| / (1 + |x₀|), so
``residual ≤ tol`` is exactly the stopping rule |Δ| ≤ tol + tol·|x₀| (element-wise).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SolverReport:
    """How a solve went: evaluations of the map, final residual (see module docstring), success, method, whether a
    fallback iteration took over, and the tolerance in force (the requested one, or the dtype's floor)."""

    iterations: int
    residual: float
    converged: bool
    method: str
    fallback_used: bool = False
    tol: float | None = None


class ConvergenceError(RuntimeError):
    """A fixed-point / root solve did not reach its tolerance within its iteration budget."""

    def __init__(self, iterations: int, residual: float, tol: float, method: str, *, what: str = "fixed-point solve"):
        self.iterations, self.residual, self.tol, self.method = iterations, residual, tol, method
        super().__init__(
            f"{what} did not converge: residual {residual:.1e} > tol {tol:.2g} after {iterations} iterations ({method})"
        )

    @classmethod
    def from_report(cls, report: SolverReport, *, what: str = "fixed-point solve") -> ConvergenceError:
        tol = float("nan") if report.tol is None else report.tol
        return cls(report.iterations, report.residual, tol, report.method, what=what)
