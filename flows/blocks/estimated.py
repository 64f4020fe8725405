"""The part every Lipschitz block shares: a configurable log-det estimator budget and a fixed-point solver.

The block is built with its family's published estimator (``LogDetConfig``) and solver (``SolverConfig``);
``configure_estimator`` (``nflab.flows.hooks``) changes its estimator options on a built model, always starting
again from the built ones. ``exact_override`` (set by
``nflab.flows.exact.exact_logdets``) switches every estimate to the exact full-Jacobian path of the branch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..logdet import LogDetConfig, PowerSeriesLogDet
from ..solvers import SolverConfig, SolverReport
from ..transform import LogdetKind, Transform
from .derivative_cache import derivative_cached

# model option names → LogDetConfig fields (the rest have the same name)
_FIELD = {"estimator": "kind"}


class Negated(nn.Module):
    """x ↦ −g(x): the branch of the inverse monotone solve (w − g(w) = √2·y)."""

    def __init__(self, g: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.g = g

    def forward(self, x: Tensor) -> Tensor:
        return -self.g(x)


class EstimatedLogDetBlock(Transform):
    """Base class: holds the built estimator options, the solver options and the last solver reports."""

    def __init__(self, logdet: LogDetConfig, solver: SolverConfig) -> None:
        super().__init__()
        self.built_logdet = logdet.validate()
        self.logdet_config = logdet
        self.solver_config = solver
        self.exact_override = False
        self.solver_reports: dict[str, SolverReport] = {}

    def estimators(self) -> list[PowerSeriesLogDet]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def kind(self) -> LogdetKind:
        return self.logdet_config.logdet_kind  # type: ignore[return-value]

    def configure_estimator(self, options: Mapping[str, Any]) -> None:
        """Apply estimator options (model option names; nulls keep the built value) on top of the built ones."""
        overrides = {_FIELD.get(k, k): v for k, v in options.items() if v is not None}
        known = set(LogDetConfig.__dataclass_fields__)
        self.logdet_config = self.built_logdet.updated(**{k: v for k, v in overrides.items() if k in known})
        for est in self.estimators():
            est.configure(self.logdet_config)

    def estimate(self, estimator: PowerSeriesLogDet, g: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
        """(g(x), log-det series of J_g(x)) with the configured budget, or exactly under ``exact_override``."""
        params = tuple(g.parameters())
        if not self.exact_override or self.logdet_config.kind == "exact":
            return estimator(self._series_branch(estimator, g), x, training=self.training, params=params)
        estimator.configure(self.logdet_config.updated(kind="exact"))
        try:
            return estimator(g, x, training=self.training, params=params)
        finally:
            estimator.configure(self.logdet_config)

    def _series_branch(self, estimator: PowerSeriesLogDet, g: nn.Module) -> Callable[[Tensor], Tensor]:
        """g, with cached activation derivatives (``derivative_cache``) where the estimate takes many VJPs.

        That is a power series (N + m terms in training, N + 20 in evaluation) with the basic gradient, which
        differentiates through every product. Not for the exact kind (D products; at D = 2 the cache costs more than
        it saves) nor for the Neumann gradient (first-order products only): measured in ``tests/benchmarks``.
        """
        config = estimator.config
        neumann = config.neumann_grad and self.training and torch.is_grad_enabled()
        return g if config.kind == "exact" or neumann else derivative_cached(g)

    def training_metrics(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for key, report in self.solver_reports.items():
            metrics[f"solver_iterations_{key}"] = float(report.iterations)
        terms = [est.last_n_terms for est in self.estimators() if getattr(est, "last_n_terms", None)]
        if terms:
            metrics["series_terms"] = float(sum(terms))
        return metrics
