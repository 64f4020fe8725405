"""One entry point for every residual-type block: (g(x), estimate of Σ_k c_k tr(J_g(x)^k)) per sample.

The series (coefficients c_k and exact value) is pluggable — residual log det(I + J) or monotone
log det(I − J) − log det(I + J) — and so is the term policy (exact / truncated / Russian roulette, see
:class:`LogDetConfig`), the gradient (basic or Neumann) and the memory-efficient backward.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from .coefficients import Coefficient, SeriesKind, as_series
from .config import LogDetConfig
from .exact import batch_jacobian, check_exact_dim
from .hutchinson import hutchinson_series
from .memory_efficient import memory_efficient_logdet
from .neumann import neumann_series
from .probes import sample_probe
from .roulette import SeriesTerms, sample_terms


class PowerSeriesLogDet(nn.Module):
    """Log-det estimator of a power series in J_g; holds a config and a series, no parameters.

    ``generator`` (a ``torch.Generator``) drives N and the probe vectors; ``None`` uses torch's global RNG.
    ``last_n_terms`` is the number of series terms of the last call (0 for the exact kind); ``last_jacobian`` is
    the exact kind's per-example J_g ``[batch, D, D]`` of the last call, detached (``None`` for the other kinds).
    """

    def __init__(
        self,
        coefficient: SeriesKind | Coefficient,
        config: LogDetConfig,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.series = as_series(coefficient)
        self.generator = generator
        self.last_n_terms = 0
        self.last_jacobian: Tensor | None = None
        self.configure(config)

    def configure(self, config: LogDetConfig) -> None:
        """Switch to another (validated) configuration, e.g. a bigger evaluation budget."""
        config.validate()
        if config.kind == "exact" and self.series.exact is None:
            raise ValueError(
                f"estimator.kind: 'exact' needs the exact map of series {self.series.name!r}; "
                "pass a SeriesKind with exact=..., or use kind 'roulette' or 'truncated'"
            )
        self.config = config

    @property
    def logdet_kind(self) -> str:
        return self.config.logdet_kind

    def extra_repr(self) -> str:
        return f"series={self.series.name}, config={self.config}"

    def forward(
        self,
        g: Callable[[Tensor], Tensor],
        x: Tensor,
        *,
        training: bool,
        params: Sequence[Tensor] = (),
    ) -> tuple[Tensor, Tensor]:
        """(g(x), estimate of Σ_k c_k tr(J_g(x)^k)) per sample. x may or may not require grad.

        ``training`` picks the training budget and builds a graph (when grad mode is on); otherwise the
        evaluation budget is used and the log-det carries no graph. ``params`` are g's parameters, needed by
        the memory-efficient backward only.
        """
        cfg = self.config
        graph = training and torch.is_grad_enabled()
        estimate = self._estimator(x, training=training)
        if graph and cfg.memory_efficient and (x.requires_grad or any(p.requires_grad for p in params)):
            _check_params(g, params)
            return memory_efficient_logdet(functools.partial(_run, estimate, graph=True), g, x, params)
        if graph or torch.is_grad_enabled():
            return _run(estimate, g, x if x.requires_grad else x.detach().requires_grad_(True), graph=graph)
        with torch.enable_grad():
            gx, logdet = _run(estimate, g, x.detach().requires_grad_(True), graph=False)
        return gx.detach(), logdet

    def _estimator(self, x: Tensor, *, training: bool) -> Callable[[Tensor, Tensor, bool], Tensor]:
        """Draw this call's randomness (N, then the probes) and bind it: (gx, x, graph) -> logdet."""
        cfg = self.config
        if cfg.kind == "exact":
            check_exact_dim(x)
            self.last_n_terms = 0
            exact = self.series.exact
            assert exact is not None  # checked in configure

            def exact_estimate(gx: Tensor, xin: Tensor, graph: bool) -> Tensor:
                jacobian = batch_jacobian(gx, xin, create_graph=graph)
                self.last_jacobian = jacobian.detach()
                return exact(jacobian)

            return exact_estimate
        self.last_jacobian = None
        terms: SeriesTerms = sample_terms(cfg, training=training, generator=self.generator)
        probes = [sample_probe(x, cfg.probe, self.generator) for _ in range(cfg.n_probes)]
        self.last_n_terms = terms.n_terms
        coefficient = self.series.coefficient

        def estimate(gx: Tensor, xin: Tensor, graph: bool) -> Tensor:
            if graph and cfg.neumann_grad:
                return neumann_series(gx, xin, probes, coefficient, terms)
            return hutchinson_series(gx, xin, probes, coefficient, terms, create_graph=graph)

        return estimate


def _run(
    estimate: Callable[[Tensor, Tensor, bool], Tensor], g: Callable[[Tensor], Tensor], x: Tensor, *, graph: bool
) -> tuple[Tensor, Tensor]:
    gx = g(x)
    logdet = estimate(gx, x, graph)
    return gx, logdet if graph else logdet.detach()


def _check_params(g: Callable[[Tensor], Tensor], params: Sequence[Tensor]) -> None:
    """With the memory-efficient backward, θ-gradients reach only ``params``: refuse a module's missing ones."""
    if not isinstance(g, nn.Module):
        return
    given = {id(p) for p in params}
    missing = [name for name, p in g.named_parameters() if p.requires_grad and id(p) not in given]
    if missing:
        raise ValueError(
            "estimator.memory_efficient: g has parameters requiring grad that are not in params= "
            f"({', '.join(missing)}); pass params=tuple(g.parameters())"
        )
