"""Options of the fixed-point solves of implicit blocks (inverse of residual blocks, monotone and implicit flows).

Defaults follow Monotone Flows: Anderson-accelerated iteration to 1e−6 in ≤ 2000 steps forward, 1e−9 in ≤ 100
steps for the implicit backward. Anderson keeps 5 past differences (capped at the dimension), where the reference
keeps 1 (``anderson_memory: 1`` reproduces it); see tests/benchmarks/RESULTS.md for the iterations saved.
``backward_direct``: where a block has the exact Jacobian at the solution anyway (exact log-det, small inputs), the
implicit backward solves (I + J)ᵀu = ḡ directly — exact, and no iterations — instead of by fixed point.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from ..options import ConfigError

SolverMethod = Literal["anderson", "plain", "broyden"]
METHODS: tuple[str, ...] = ("anderson", "plain", "broyden")


@dataclass
class SolverConfig:
    """Method and tolerances of a fixed-point solve and of its implicit-gradient solve."""

    method: SolverMethod = "anderson"
    tol: float = 1e-6
    max_iter: int = 2000
    backward_tol: float = 1e-9
    backward_max_iter: int = 100
    anderson_memory: int = 5
    backward_direct: bool = True

    def validate(self, prefix: str = "solver") -> SolverConfig:
        """Raise :class:`ConfigError` (a ValueError) naming the first bad option; return ``self`` when valid."""
        check_method(self.method, f"{prefix}.method")
        for name in ("tol", "backward_tol"):
            check_tolerance(getattr(self, name), f"{prefix}.{name}")
        for name in ("max_iter", "backward_max_iter", "anderson_memory"):
            check_max_iter(getattr(self, name), f"{prefix}.{name}")
        if not isinstance(self.backward_direct, bool):
            raise ConfigError(f"{prefix}.backward_direct", self.backward_direct, "true or false")
        return self

    def updated(self, **overrides: Any) -> SolverConfig:
        """A validated copy with ``overrides`` applied; ``None`` values are ignored."""
        names = {f.name for f in dataclasses.fields(self)}
        for key in overrides:
            if key not in names:
                raise ConfigError(f"solver.{key}", key, f"a solver option; allowed: {', '.join(sorted(names))}")
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None}).validate()


def check_method(method: Any, path: str = "solver.method") -> None:
    if not isinstance(method, str) or method not in METHODS:
        raise ConfigError(path, method, "one of: " + ", ".join(METHODS))


def check_tolerance(tol: Any, path: str = "solver.tol") -> None:
    if not isinstance(tol, int | float) or isinstance(tol, bool) or not 0.0 < float(tol) < float("inf"):
        raise ConfigError(path, tol, "a finite number > 0")


def check_max_iter(max_iter: Any, path: str = "solver.max_iter") -> None:
    if not isinstance(max_iter, int) or isinstance(max_iter, bool) or max_iter < 1:
        raise ConfigError(path, max_iter, "an integer ≥ 1")
