"""Eight runs finishing together through Ray into one MLflow SQLite store, read back with the stock client."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import mlflow
from mlflow.tracking import MlflowClient

from nflab.workers import run_specs
from nflab.workers.tracking import ensure_experiment, flatten, param_value


def test_eight_runs_are_all_in_mlflow(ray_local, make_spec, workdir, mlflow_uri, experiment) -> None:
    specs = [
        make_spec(f"many-r{i}", seed=i, dataset__test_samples=500, train__steps=20, train__eval_every=10)
        for i in range(8)
    ]
    results: dict[str, dict] = {}
    lock = threading.Lock()

    def record(key: str, result: dict) -> None:
        with lock:
            assert key not in results
            results[key] = result

    run_specs(
        specs,
        workdir=workdir,
        tracking_uri=mlflow_uri,
        experiment_name=experiment,
        run_ids={s["run_key"]: f"nflab-{s['run_key']}" for s in specs},
        on_result=record,
    )
    assert sorted(results) == sorted(s["run_key"] for s in specs)
    assert all(r["status"] == "finished" for r in results.values()), [r["error"] for r in results.values()]

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_uri)
    try:
        df = mlflow.search_runs(experiment_names=[experiment])
    finally:
        mlflow.set_tracking_uri(previous)
    assert len(df) == 8
    assert set(df["tags.nflab.run_key"]) == set(results)
    assert (df["status"] == "FINISHED").all()
    for col in ("metrics.best_nats", "metrics.final_nats", "metrics.cert_inversion_error", "metrics.test_nats"):
        assert df[col].notna().all(), col
    assert (df["params.model.family"] == "realnvp").all()
    assert (df["params.train.steps"] == "20").all()
    assert set(df["params.seed"]) == {str(i) for i in range(8)}
    by_key = {row["tags.nflab.run_key"]: row for _, row in df.iterrows()}
    client = MlflowClient(mlflow_uri)
    for key, result in results.items():
        row = by_key[key]
        assert row["run_id"] == result["mlflow_run_id"]
        final = next(r["value"] for r in result["results"] if r["kind"] == "final")
        assert row["metrics.final_nats"] == final
        names = {a.path for a in client.list_artifacts(result["mlflow_run_id"])}
        assert {"config.json", "density.png", "checkpoints"} <= names
        assert [a.path for a in client.list_artifacts(result["mlflow_run_id"], "checkpoints")] == [
            "checkpoints/step_00000020.pt"
        ]


def test_concurrent_experiment_creation_is_race_safe(mlflow_uri, experiment) -> None:
    client = MlflowClient(mlflow_uri)
    with ThreadPoolExecutor(max_workers=4) as pool:
        ids = list(pool.map(lambda _: ensure_experiment(client, experiment, mlflow_uri), range(8)))
    assert len(set(ids)) == 1
    assert client.get_experiment(ids[0]).artifact_location.endswith("/artifacts")


def test_params_are_flattened_and_cut_to_the_limit() -> None:
    flat = flatten({"model": {"family": "x", "hidden": [64, 64]}, "train": {"lr": 1e-3}, "empty": {}})
    assert flat == {"model.family": "x", "model.hidden": [64, 64], "train.lr": 1e-3, "empty": {}}
    assert param_value([64, 64]) == "[64, 64]" and len(param_value("a" * 900)) == 500
