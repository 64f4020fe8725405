"""Studies attached to a run by the pipeline's ``analysis`` section, dispatched by ``execute_run``.

- ``estimator_bias`` (E4): after training, bias and std of the truncated and Russian-roulette log-det estimators
  vs the number of series terms, on the run's best checkpoint.
- ``fit1d`` (E1) is not an analysis but a run kind of its own (config ``kind: fit1d``): a 1-D regression with
  two-block residual / inverse-residual / monotone maps, run by ``run_fit1d`` instead of density training; so is
  ``coupling_linear`` (E6): regressions of K linear affine couplings onto random linear maps (``run_coupling_linear``).
Each writes a JSON and a PNG into ``<run folder>/analysis/``, logs them as MLflow artifacts under ``analysis/``
and logs its numbers as MLflow metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .common import AnalysisOutcome, analysis_options
from .coupling_linear import run_coupling_linear
from .estimator_bias import run_estimator_bias
from .fit1d import run_fit1d


@dataclass(frozen=True)
class Analysis:
    """An analysis kind and its runner (after the run's density training)."""

    kind: str
    run: Callable[..., AnalysisOutcome]


ANALYSES: dict[str, Analysis] = {"estimator_bias": Analysis("estimator_bias", run_estimator_bias)}
#: run kinds of their own (config ``kind``): their runner replaces density training
RUN_KINDS: dict[str, Callable[..., AnalysisOutcome]] = {"fit1d": run_fit1d, "coupling_linear": run_coupling_linear}


def analysis_of(spec: Mapping[str, Any]) -> Analysis | None:
    """The analysis a RunSpec asks for (``None`` for kind ``none`` or no section); unknown kinds are an error."""
    kind = str(analysis_options(spec).get("kind") or "none")
    if kind == "none":
        return None
    if kind not in ANALYSES:
        raise ValueError(f"analysis.kind: {kind!r} is not one of: none, {', '.join(ANALYSES)}")
    return ANALYSES[kind]


__all__ = ["ANALYSES", "RUN_KINDS", "Analysis", "AnalysisOutcome", "analysis_of", "run_coupling_linear", "run_fit1d"]
