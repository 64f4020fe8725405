"""Fixed-point solvers of the residual family: plain, Anderson-accelerated and Broyden iterations with one stopping
rule (|Δ| ≤ tol + tol·|x₀|), the resolvent (I + h)^{-1}, implicit differentiation, and convergence reports.
"""

from .anderson import anderson_iteration
from .broyden import broyden
from .config import SolverConfig
from .damped import damped_iteration
from .errors import ConvergenceError, SolverReport
from .fixed_point import fixed_point
from .implicit import ImplicitGradient, JacobianSlot, direct_transpose_solve, implicit_resolvent
from .resolvent import resolvent

__all__ = [
    "ConvergenceError",
    "ImplicitGradient",
    "JacobianSlot",
    "SolverConfig",
    "SolverReport",
    "anderson_iteration",
    "broyden",
    "damped_iteration",
    "direct_transpose_solve",
    "fixed_point",
    "implicit_resolvent",
    "resolvent",
]
