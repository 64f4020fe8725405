"""execute_run end to end for the families that need more than an exact log-det: a Lipschitz family with an
estimated log-det (the pipeline's estimator section applied, solver and series metrics logged), the monotone
family (implicit differentiation inside a real run), CIF (evaluated by its IWAE estimate, no exact path) and a
padded flow (the Jacobian condition number certificate)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from nflab.workers import execute_run


def _run(spec: dict, workdir: Path, uri: str, experiment: str) -> dict:
    return execute_run(spec, workdir=workdir, tracking_uri=uri, experiment_name=experiment, nflab_run_id="id")


def _rows(result: dict) -> dict[tuple[str, str], dict]:
    return {(r["kind"], r["metric"]): r for r in result["results"]}


def test_resflow_run_uses_the_pipeline_estimator_and_logs_series_terms(make_spec, workdir, mlflow_uri, experiment):
    spec = make_spec(
        "resflow-r0",
        model__family="resflow",
        estimator__n_exact_terms=3,
        estimator__dist="poisson",
        eval__exact=False,
        train__steps=20,
        train__eval_every=10,
        train__log_every=5,
    )
    result = _run(spec, workdir, mlflow_uri, experiment)
    assert result["status"] == "finished", result["error"]
    assert _rows(result)["final", "nats"]["budget"] == "rr-20"  # the unbiased estimator, evaluation budget
    history = MlflowClient(mlflow_uri).get_metric_history(result["mlflow_run_id"], "series_terms")
    assert history and min(m.value for m in history) >= 4 * 3  # 4 blocks × at least 3 exact terms
    assert result["certificates"]["inversion_error"] < 1e-4
    assert result["certificates"]["logdet_gap"] < 1.0  # one-probe estimate vs the exact log-det


def test_monotone_run_trains_through_implicit_gradients(make_spec, workdir, mlflow_uri, experiment):
    spec = make_spec(
        "monotone-r0",
        model__family="monotone",
        estimator__kind=None,
        train__steps=20,
        train__eval_every=10,
        train__log_every=5,
        train__lr=5e-3,
    )
    result = _run(spec, workdir, mlflow_uri, experiment)
    assert result["status"] == "finished", result["error"]
    rows = _rows(result)
    assert rows["final", "nats"]["budget"] == "exact"  # the toy monotone model's published exact 2×2 log-det
    client = MlflowClient(mlflow_uri)
    iterations = client.get_metric_history(result["mlflow_run_id"], "solver_iterations_forward")
    assert iterations and all(m.value > 0 for m in iterations)
    assert result["certificates"]["inversion_error"] < 1e-4
    assert result["certificates"]["logdet_gap"] < 1e-6
    assert result["certificates"]["jacobian_condition"] >= 1.0


def test_cif_run_is_evaluated_by_its_importance_weighted_estimate(make_spec, workdir, mlflow_uri, experiment):
    spec = make_spec(
        "cif-r0",
        model__family="cif",
        model__base="realnvp",
        model__num_importance_samples=20,
        train__steps=20,
        train__eval_every=10,
    )
    result = _run(spec, workdir, mlflow_uri, experiment)
    assert result["status"] == "finished", result["error"]
    assert _rows(result)["final", "nats"]["budget"] == "iwae-20"
    assert result["certificates"]["inversion_error"] is None and result["certificates"]["logdet_gap"] is None


@pytest.mark.slow  # ~16 s (make test-slow keeps make test under 15 minutes; padded bounds are tested in unit tests)
def test_padded_run_reports_the_condition_number(make_spec, workdir, mlflow_uri, experiment):
    spec = make_spec(
        "pad-r0",
        model__padding=2,
        model__padding_kind="gaussian",
        train__steps=20,
        train__eval_every=10,
    )
    result = _run(spec, workdir, mlflow_uri, experiment)
    assert result["status"] == "finished", result["error"]
    assert result["certificates"]["jacobian_condition"] >= 1.0
    assert result["certificates"]["logdet_gap"] is None
