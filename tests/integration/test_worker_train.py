"""execute_run end to end with real flows and a real MLflow SQLite store: results, learning, EMA, images, NaN."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient

from nflab.flows import bits_per_dim
from nflab.workers import execute_run


def _run(spec: dict, workdir: Path, uri: str, experiment: str, **kw) -> dict:
    return execute_run(
        spec, workdir=workdir, tracking_uri=uri, experiment_name=experiment, nflab_run_id=f"id-{spec['run_key']}", **kw
    )


def _rows(result: dict, split: str = "test") -> dict[tuple[str, str], dict]:
    return {(r["kind"], r["metric"]): r for r in result["results"] if r["split"] == split}


def test_toy_run_learns_and_reports(make_spec, workdir, mlflow_uri, experiment) -> None:
    spec = make_spec(
        "learn-r0",
        dataset__test_samples=1000,
        train__steps=100,
        train__lr=5e-3,
        train__batch_size=64,
        train__eval_every=20,
        train__checkpoint_every=50,
    )
    seen: list[tuple[str, int, int]] = []
    result = _run(spec, workdir, mlflow_uri, experiment, progress=lambda k, s, t, m: seen.append((k, s, t)))
    assert result["status"] == "finished", result["error"]
    assert result["steps"] == 100 and result["resumed_from"] is None
    rows, val = _rows(result), _rows(result, "validation")
    certificates = {"inversion_error", "logdet_gap", "jacobian_condition", "jacobian_norm"}
    assert set(rows) == {("best", "nats"), ("final", "nats"), ("mean", "nats")} | {("best", c) for c in certificates}
    assert set(val) == {("best", "nats"), ("final", "nats")}
    assert rows["final", "nats"]["step"] == 100 and rows["final", "nats"]["budget"] == "exact"
    assert rows["final", "nats"]["quantity"] == "exact" and rows["final", "nats"]["n_samples"] == 1000
    assert val["best", "nats"]["value"] <= val["final", "nats"]["value"]  # selected on validation
    assert rows["best", "nats"]["selection"] == "val-best" and rows["mean", "nats"]["selection"] == "last-5-mean"
    assert seen[0] == ("learn-r0", 10, 100) and seen[-1] == ("learn-r0", 100, 100)
    history = MlflowClient(mlflow_uri).get_metric_history(result["mlflow_run_id"], "val_nats")
    nats = [m.value for m in sorted(history, key=lambda m: m.step)]
    assert len(nats) == 5 and nats[-1] < nats[0] - 0.3  # learning happened
    tests = MlflowClient(mlflow_uri).get_metric_history(result["mlflow_run_id"], "test_nats")
    mean = sum(m.value for m in tests) / len(tests)
    assert len(tests) == 5 and math.isclose(rows["mean", "nats"]["value"], mean, rel_tol=1e-12)
    assert result["n_params"] > 0 and len(result["data_digest"]) == 64
    assert result["certificates"]["inversion_error"] < 1e-3
    assert result["certificates"]["logdet_gap"] < 1e-3
    assert [Path(a).name for a in result["artifacts"]] == ["density.png"]
    assert [c["step"] for c in result["checkpoints"] if "/step_" in c["uri"]] == [50, 100]
    best_file = [c for c in result["checkpoints"] if "/best_step_" in c["uri"]]
    assert [c["step"] for c in best_file] == [rows["best", "nats"]["step"]]
    assert all(len(c["sha256"]) == 64 for c in result["checkpoints"])


def test_ema_evaluation_path(make_spec, workdir, mlflow_uri, experiment) -> None:
    spec = make_spec(
        "ema-r0", train__steps=30, train__ema=0.9, train__grad_clip=1.0, train__warmup_steps=10, train__log_every=1
    )
    result = _run(spec, workdir, mlflow_uri, experiment)
    assert result["status"] == "finished", result["error"]
    saved = torch.load(workdir / "ema-r0" / "checkpoints" / "step_00000030.pt", weights_only=False)
    assert saved["ema"]["shadow"] is not None
    live = dict(saved["model"])
    assert any(not torch.equal(v, live[k]) for k, v in saved["ema"]["shadow"].items())
    history = MlflowClient(mlflow_uri).get_metric_history(result["mlflow_run_id"], "lr")
    lrs = [m.value for m in sorted(history, key=lambda m: m.step)]
    assert math.isclose(lrs[0], 1e-4) and math.isclose(lrs[9], 1e-3) and math.isclose(lrs[-1], 1e-3)  # warm-up
    assert max(m.value for m in MlflowClient(mlflow_uri).get_metric_history(result["mlflow_run_id"], "grad_norm")) > 0


def test_image_run_reports_consistent_bpd(make_spec, workdir, mlflow_uri, experiment) -> None:
    spec = make_spec(
        "digits-r0",
        dataset__name="digits",
        dataset__test_samples=100,
        train__steps=6,
        train__batch_size=32,
        train__eval_every=3,
        train__checkpoint_every=3,
        train__log_every=3,
        eval__best_metric="bpd",
        eval__batch_size=100,
        eval__average_last=0,
    )
    result = _run(spec, workdir, mlflow_uri, experiment)
    assert result["status"] == "finished", result["error"]
    rows = {k: v for k, v in _rows(result).items() if k[1] in ("nats", "bpd")}
    assert set(rows) == {("best", "nats"), ("final", "nats"), ("best", "bpd"), ("final", "bpd")}  # no average
    assert _rows(result, "validation")["best", "bpd"]["n_samples"] == 144  # 10 % of digits' 1438 training images
    for kind in ("best", "final"):
        nats, bpd = rows[kind, "nats"]["value"], rows[kind, "bpd"]["value"]
        assert math.isfinite(bpd) and bpd > 0
        assert math.isclose(bpd, float(bits_per_dim(-nats, (1, 8, 8), n_bins=17)), rel_tol=1e-9)
    assert [Path(a).name for a in result["artifacts"]] == ["samples.png"]
    assert result["certificates"]["inversion_error"] < 1e-2


def test_non_finite_loss_fails_the_run(make_spec, workdir, mlflow_uri, experiment) -> None:
    spec = make_spec("nan-r0", train__lr=1e6, train__steps=50)
    result = _run(spec, workdir, mlflow_uri, experiment)
    assert result["status"] == "failed"
    assert "non-finite" in result["error"] and "at step" in result["error"]
    assert result["results"] == [] and result["steps"] < 50
    run = MlflowClient(mlflow_uri).get_run(result["mlflow_run_id"])
    assert run.info.status == "FAILED" and "non-finite" in run.data.tags["nflab.error"]


def test_bad_dataset_fails_without_raising(make_spec, workdir, mlflow_uri, experiment) -> None:
    spec = make_spec("bad-r0")
    spec["config"]["dataset"]["name"] = "nosuchdata"  # a spec that bypassed resolution (expand refuses the name)
    result = _run(spec, workdir, mlflow_uri, experiment)
    assert result["status"] == "failed" and "nosuchdata" in result["error"]
    assert "\n" not in result["error"]
