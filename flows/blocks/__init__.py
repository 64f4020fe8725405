"""Invertible blocks built on a Lipschitz-constrained branch g (Lip(g) < 1): residual, monotone and implicit.

All three share one estimator of log-determinants (``nflab.flows.logdet``), one fixed-point solver with implicit
differentiation (``nflab.flows.solvers``) and the Lipschitz layers of ``nflab.flows.layers``; they differ only in
how g enters the map.
"""

from .estimated import EstimatedLogDetBlock, Negated
from .implicit import ImplicitBlock
from .monotone import MonotoneBlock
from .residual import ResidualBlock

__all__ = ["EstimatedLogDetBlock", "ImplicitBlock", "MonotoneBlock", "Negated", "ResidualBlock"]
