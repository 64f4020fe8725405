"""Numerical studies of flows in pure PyTorch: log-det estimator bias/variance (E4) and 1-D fitting maps (E1)."""

from .estimator_bias import SeriesSite, estimator_bias_variance, series_sites
from .fit1d import BRANCHES, FIT1D_VARIANTS, VARIANT_LABELS, Inverted, Scaled, build_fit1d, slope_range

__all__ = [
    "BRANCHES",
    "FIT1D_VARIANTS",
    "VARIANT_LABELS",
    "Inverted",
    "Scaled",
    "SeriesSite",
    "build_fit1d",
    "estimator_bias_variance",
    "series_sites",
    "slope_range",
]
