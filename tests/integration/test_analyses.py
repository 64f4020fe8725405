"""Runs with an ``analysis`` section through ``execute_run`` (real flows, real MLflow SQLite store), and through the
CLI into the nflab store: E4 estimator bias after training, E1 1-D fits instead of training."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from nflab.cli import app
from nflab.workers import execute_run

TERMS = [1, 2, 4, 8]


def _run(spec: dict, workdir: Path, uri: str, experiment: str) -> dict:
    return execute_run(
        spec, workdir=workdir, tracking_uri=uri, experiment_name=experiment, nflab_run_id=f"id-{spec['run_key']}"
    )


def _history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, key))


def _artifact_names(uri: str, run_id: str) -> set[str]:
    return {Path(f.path).name for f in MlflowClient(uri).list_artifacts(run_id, "analysis")}


@pytest.mark.parametrize(
    ("family", "series"),
    [("resflow", "residual"), pytest.param("monotone", "monotone", marks=pytest.mark.slow)],  # monotone: ~6 s
)
def test_estimator_bias_after_training(family, series, make_spec, workdir, mlflow_uri, experiment) -> None:
    spec = make_spec(
        f"e4-{family}-r0",
        dataset__name="checkerboard",
        dataset__test_samples=500,
        model__family=family,
        estimator__kind="exact",
        train__steps=20,
        train__batch_size=64,
        train__eval_every=10,
        train__checkpoint_every=10,
        train__dtype="float64",
        analysis={"kind": "estimator_bias", "terms": TERMS, "repeats": 10, "points": 16},
    )
    result = _run(spec, workdir, mlflow_uri, experiment)
    assert result["status"] == "finished", result["error"]
    nats = {(r["kind"], r["split"]) for r in result["results"] if r["metric"] == "nats"}
    assert nats == {
        ("best", "test"),
        ("final", "test"),
        ("best", "validation"),
        ("final", "validation"),
        ("mean", "test"),
    }
    folder = workdir / spec["run_key"] / "analysis"
    assert [Path(a).name for a in result["artifacts"]] == ["density.png", "estimator_bias.json", "estimator_bias.png"]
    assert (folder / "estimator_bias.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((folder / "estimator_bias.json").read_text())
    assert report["terms"] == TERMS and report["series"] == [series] and report["blocks"] == 4
    assert report["family"] == family and report["trained_steps"] == 20
    run_id = result["mlflow_run_id"]
    assert _artifact_names(mlflow_uri, run_id) == {"estimator_bias.json", "estimator_bias.png"}
    for estimator, stat in (("truncated", "bias"), ("truncated", "expected_abs_bias"), ("roulette", "std")):
        history = _history(mlflow_uri, run_id, f"e4_{estimator}_{stat}")
        assert [step for step, _ in history] == TERMS
        assert [value for _, value in history] == pytest.approx(report[estimator][stat], rel=1e-12, abs=1e-300)
    trunc = report["truncated"]
    assert trunc["expected_abs_bias"][-1] < trunc["expected_abs_bias"][0]
    assert all(abs(b) <= 4 * se + 1e-12 for b, se in zip(report["roulette"]["bias"], report["roulette"]["bias_se"]))


def test_estimator_bias_needs_a_series_model(make_spec, workdir, mlflow_uri, experiment) -> None:
    spec = make_spec(
        "e4-realnvp-r0",
        train__steps=10,
        train__eval_every=10,
        train__checkpoint_every=10,
        analysis={"kind": "estimator_bias", "terms": [1], "repeats": 2, "points": 4},
    )
    result = _run(spec, workdir, mlflow_uri, experiment)
    assert result["status"] == "failed" and result["results"] == []
    assert result["error"].startswith("analysis.kind estimator_bias: estimator_bias_variance needs power-series log-")
    assert "\n" not in result["error"]


def _fit_spec(make_spec, variant: str, steps: int) -> dict:
    spec = make_spec(
        f"fit-{variant}-{steps}",
        train__steps=steps,
        train__batch_size=256,
        train__lr=3e-3,
        train__eval_every=max(1, steps // 2),
        train__log_every=max(1, steps // 4),
        train__dtype="float64",
        fit1d={"target": "impflowfunc", "variant": variant, "grid": 200},
    )
    return spec


@pytest.mark.parametrize("variant", ["residual", "scaled_residual", "scaled_inverse_residual", "scaled_monotone"])
def test_fit1d_variant_records_files_metrics_and_rows(variant, make_spec, workdir, mlflow_uri, experiment) -> None:
    spec = _fit_spec(make_spec, variant, 8)
    result = _run(spec, workdir, mlflow_uri, experiment)
    assert result["status"] == "finished", result["error"]
    assert result["steps"] == 8 and result["checkpoints"] == []
    rows = {r["kind"]: r for r in result["results"] if r["split"] == "test"}
    val = {r["kind"]: r for r in result["results"] if r["split"] == "validation"}
    assert set(rows) == set(val) == {"best", "final"}
    assert all(r["metric"] == "mse" and r["budget"] == "grid-200" and r["quantity"] == "exact" for r in rows.values())
    assert rows["best"]["selection"] == "val-best" and rows["final"]["selection"] == "final"
    assert rows["final"]["step"] == 8 and val["best"]["value"] <= val["final"]["value"]  # selected on validation
    folder = workdir / spec["run_key"] / "analysis"
    report = json.loads((folder / "fit1d.json").read_text())
    assert report["variant"] == variant and report["target"] == "impflowfunc" and report["steps"] == 8
    assert report["final_mse"] == rows["final"]["value"] and report["best_mse"] == rows["best"]["value"]
    fit, target = report["grid"]["fit"], report["grid"]["target"]
    assert len(fit) == len(target) == 200
    assert report["final_mse"] == pytest.approx(sum((f - t) ** 2 for f, t in zip(fit, target)) / 200, rel=1e-9)
    assert [Path(a).name for a in result["artifacts"]] == ["fit1d.json", "fit1d.png"]
    run_id = result["mlflow_run_id"]
    assert _artifact_names(mlflow_uri, run_id) == {"fit1d.json", "fit1d.png"}
    assert _history(mlflow_uri, run_id, "test_mse") == [(4, report["history"][0]["mse"]), (8, report["final_mse"])]
    assert _history(mlflow_uri, run_id, "val_mse") == [(4, report["history"][0]["val_mse"]), (8, val["final"]["value"])]
    assert _history(mlflow_uri, run_id, "final_mse") == [(8, report["final_mse"])]
    assert [s for s, _ in _history(mlflow_uri, run_id, "train_mse")] == [2, 4, 6, 8]


def test_monotone_fits_the_steep_target_that_residual_blocks_cannot(make_spec, workdir, mlflow_uri, experiment) -> None:
    """impflowfunc has slope 10 for x > 0; two unscaled residual blocks have slopes below (1 + L)² < 4."""
    results = {}
    for variant in ("residual", "scaled_monotone"):
        result = _run(_fit_spec(make_spec, variant, 100), workdir, mlflow_uri, experiment)
        assert result["status"] == "finished", result["error"]
        results[variant] = {r["kind"]: r["value"] for r in result["results"] if r["split"] == "test"}["best"]
    assert results["residual"] > 1.0  # far from the target: the slope bound binds
    assert results["scaled_monotone"] < 0.1 * results["residual"]  # about 0.08 against 3.5 after 100 steps
    report = json.loads((workdir / "fit-residual-100" / "analysis" / "fit1d.json").read_text())
    assert report["fit_slope_range"][1] < report["unscaled_slope_bound"][1] < 4.0


PIPELINE = """\
name: analyses-store
dataset: {name: checkerboard, test_samples: 200}
model: {family: resflow, preset: small}
estimator: {kind: exact}
train: {steps: 6, batch_size: 64, eval_every: 3, checkpoint_every: 3, log_every: 3, seed: 0, dtype: float64}
eval: {batch_size: 200, exact: true, samples: 200}
"""
FIT = """\
name: analyses-store-fit
train: {steps: 6, batch_size: 64, eval_every: 3, checkpoint_every: 3, log_every: 3, seed: 0, dtype: float64}
fit1d: {variant: residual, grid: 50}
"""


def test_store_and_cli_take_analysis_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_uri: str) -> None:
    """A plain density run and a fit1d run (a run kind of its own) in one campaign, recorded in a real nflab store:
    the mse rows are kept,
    the leaderboard serves them (``--metric mse``, and by default for the fit's target), and the read commands show
    both runs."""
    from nflab.pipelines import expand, load_pipeline_text
    from nflab.store import Store

    for var in ("NFLAB_DB_URL", "MLFLOW_TRACKING_URI", "NFLAB_OPTUNA_URL", "NFLAB_DATA", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("NFLAB_HOME", str(home))
    specs = [s.model_dump(mode="json") for text in (PIPELINE, FIT) for s in expand(load_pipeline_text(text))]
    assert "analysis" not in specs[0]["config"] and specs[1]["config"]["kind"] == "fit1d"
    with Store(f"sqlite:///{home / 'nflab.db'}") as store:
        campaign = store.create_campaign("analyses-store", "fp", PIPELINE)
        ids = store.add_runs(campaign, specs)
        for spec in specs:
            result = execute_run(
                spec,
                workdir=home / "runs" / campaign,
                tracking_uri=mlflow_uri,
                experiment_name=f"analyses-{campaign[:8]}",
                nflab_run_id=ids[spec["run_key"]],
            )
            assert result["status"] == "finished", result["error"]
            store.record_result(ids[spec["run_key"]], result)
    db = sqlite3.connect(home / "nflab.db")
    labels = db.execute("select dataset, family from nflab_runs order by family").fetchall()
    assert labels == [("impflowfunc", "fit1d:residual"), ("checkerboard", "resflow")]  # a fit1d run has no dataset
    stored = db.execute("select metric, kind, budget from nflab_results where split = 'test'").fetchall()
    density = [("nats", kind, "exact") for kind in ("best", "final", "mean")]
    certificates = [
        (c, "best", "probe-64") for c in ("inversion_error", "logdet_gap", "jacobian_condition", "jacobian_norm")
    ]
    assert sorted(stored) == sorted([*density, *certificates, ("mse", "best", "grid-50"), ("mse", "final", "grid-50")])
    runner = CliRunner()
    board = runner.invoke(app, ["leaderboard", "--json", "--no-reference"], catch_exceptions=False)
    assert board.exit_code == 0, board.output
    ours = {(row["dataset"], row["family"], row["metric"]) for row in json.loads(board.stdout)}
    assert ours == {("checkerboard", "resflow", "nats"), ("impflowfunc", "fit1d:residual", "mse")}
    mse = runner.invoke(app, ["leaderboard", "--metric", "mse", "--json"], catch_exceptions=False)
    (row,) = json.loads(mse.stdout)
    best_mse = db.execute(
        "select value from nflab_results where metric = 'mse' and kind = 'best' and split = 'test'"
    ).fetchone()[0]
    assert row["family"] == "fit1d:residual" and row["mean"] == best_mse and row["selection"] == "val-best"
    table = runner.invoke(app, ["status", campaign], catch_exceptions=False)
    assert table.exit_code == 0 and table.output.count("finished") == 2, table.output
    fit_key = specs[1]["run_key"]
    logs = runner.invoke(app, ["logs", fit_key, "--json"], catch_exceptions=False)
    assert logs.exit_code == 0
    shown = json.loads(logs.stdout)
    assert "fit1d regression" in shown["log"]
    assert {(r["metric"], r["kind"]) for r in shown["run"]["results"]} == {("mse", "best"), ("mse", "final")}
    assert {r["split"] for r in shown["run"]["results"]} == {"test", "validation"}
