"""Options of the power-series log-det estimator log det(I + J) ≈ Σ_k c_k w_k vᵀJ^k v (Chen et al., 2019).

``kind`` picks the term policy: ``exact`` (full Jacobian, D ≤ 1024), ``truncated`` (n terms, biased, Behrmann et
al., 2019) or ``roulette`` (Russian roulette, unbiased). Defaults are those of residual-flows' toy models.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from ..options import ConfigError

EstimatorKind = Literal["exact", "truncated", "roulette"]
TermDistribution = Literal["geometric", "poisson"]
ProbeKind = Literal["gaussian", "rademacher"]

_KINDS = ("exact", "truncated", "roulette")
_DISTS = ("geometric", "poisson")
_PROBES = ("gaussian", "rademacher")
_LOGDET_KIND = {"exact": "exact", "roulette": "unbiased", "truncated": "biased"}


@dataclass
class LogDetConfig:
    """How a residual-type block estimates its log-determinant (see module docstring)."""

    kind: EstimatorKind = "roulette"
    n_terms: int = 5  # truncated: number of series terms (i-ResNet: 5)
    n_exact_terms: int = 2  # roulette: terms always computed (m)
    dist: TermDistribution = "geometric"
    geom_p: float = 0.5
    poisson_lambda: float = 2.0
    probe: ProbeKind = "gaussian"
    n_probes: int = 1
    neumann_grad: bool = False  # series kinds only; ignored by kind "exact"
    memory_efficient: bool = False
    eval_n_exact_terms: int = 20  # roulette: m in evaluation

    def validate(self, prefix: str = "estimator") -> LogDetConfig:
        """Raise :class:`ConfigError` (a ValueError) naming the first bad option; return ``self`` when valid."""
        _choice(f"{prefix}.kind", self.kind, _KINDS)
        _choice(f"{prefix}.dist", self.dist, _DISTS)
        _choice(f"{prefix}.probe", self.probe, _PROBES)
        _integer(f"{prefix}.n_terms", self.n_terms, minimum=1)
        _integer(f"{prefix}.n_exact_terms", self.n_exact_terms, minimum=0)
        _integer(f"{prefix}.eval_n_exact_terms", self.eval_n_exact_terms, minimum=0)
        _integer(f"{prefix}.n_probes", self.n_probes, minimum=1)
        _number(f"{prefix}.geom_p", self.geom_p, "a number with 0 < geom_p < 1", lambda p: 0.0 < p < 1.0)
        _number(f"{prefix}.poisson_lambda", self.poisson_lambda, "a number > 0", lambda lam: lam > 0.0)
        for name in ("neumann_grad", "memory_efficient"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{prefix}.{name}", getattr(self, name), "a boolean")
        return self

    def updated(self, **overrides: Any) -> LogDetConfig:
        """A validated copy with ``overrides`` applied; ``None`` values are ignored (keep the current value)."""
        names = {f.name for f in dataclasses.fields(self)}
        for key in overrides:
            if key not in names:
                raise ConfigError(f"estimator.{key}", key, f"an estimator option; allowed: {', '.join(sorted(names))}")
        changes = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **changes).validate()

    @property
    def logdet_kind(self) -> Literal["exact", "unbiased", "biased"]:
        """What the estimate claims: ``exact``, ``unbiased`` (roulette) or ``biased`` (truncated series)."""
        return _LOGDET_KIND[self.kind]  # type: ignore[return-value]


def _choice(path: str, value: Any, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(path, value, "one of: " + ", ".join(allowed))


def _integer(path: str, value: Any, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(path, value, f"an integer ≥ {minimum}")


def _number(path: str, value: Any, allowed: str, ok: Any) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not ok(float(value)):
        raise ConfigError(path, value, allowed)
