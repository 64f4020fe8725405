"""Power-series log-determinants of residual-type blocks: Σ_k c_k tr(J^k) by exact, truncated or Russian-roulette
estimators with Hutchinson probes, Neumann gradients and a memory-efficient backward (Chen et al., 2019).
"""

from .coefficients import (
    MONOTONE_SERIES,
    RESIDUAL_SERIES,
    Coefficient,
    SeriesKind,
    monotone_coefficient,
    monotone_exact,
    residual_coefficient,
    residual_exact,
)
from .config import LogDetConfig
from .exact import batch_jacobian, exact_series
from .hutchinson import hutchinson_series
from .memory_efficient import UnequalUpstreamGradientError, memory_efficient_logdet
from .neumann import neumann_series
from .probes import sample_probe
from .roulette import (
    SeriesTerms,
    geometric_tail,
    poisson_tail,
    roulette_weights,
    sample_count,
    sample_terms,
    tail_probability,
    truncated_terms,
)
from .series import PowerSeriesLogDet

__all__ = [
    "MONOTONE_SERIES",
    "RESIDUAL_SERIES",
    "Coefficient",
    "LogDetConfig",
    "PowerSeriesLogDet",
    "SeriesKind",
    "SeriesTerms",
    "UnequalUpstreamGradientError",
    "batch_jacobian",
    "exact_series",
    "geometric_tail",
    "hutchinson_series",
    "memory_efficient_logdet",
    "monotone_coefficient",
    "monotone_exact",
    "neumann_series",
    "poisson_tail",
    "residual_coefficient",
    "residual_exact",
    "roulette_weights",
    "sample_count",
    "sample_probe",
    "sample_terms",
    "tail_probability",
    "truncated_terms",
]
