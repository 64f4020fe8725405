"""The CLI end to end on the embedded default: real local Ray, real MLflow (SQLite), real nflab SQLite store."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from nflab.cli import app

PIPELINE = """\
name: cli-toy
dataset: {name: 8gaussians, test_samples: 500}
model: {family: realnvp, preset: small}
train: {steps: 40, batch_size: 128, eval_every: 20, checkpoint_every: 20, log_every: 10, seed: 0}
eval: {batch_size: 500, exact: true}
resources: {cpu: 1, gpu: 0, retries: 1}
matrix:
  model.family: [nice, realnvp]
  train.seed: [0, 1]
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("NFLAB_DB_URL", "MLFLOW_TRACKING_URI", "NFLAB_OPTUNA_URL", "NFLAB_DATA", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NFLAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_run_status_leaderboard_logs(home: Path, tmp_path: Path, ray_local: None) -> None:
    pipeline = tmp_path / "toy.yaml"
    pipeline.write_text(PIPELINE)
    result = _invoke("run", str(pipeline), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    runs = out["runs"]
    assert len(runs) == 4 and {r["status"] for r in runs} == {"finished"}

    # the rows in SQLite are the ones the CLI reported, with best/final results per run
    db = sqlite3.connect(home / "nflab.db")
    stored = db.execute("select count(*) from nflab_runs where status='finished'").fetchone()[0]
    assert stored == 4
    metrics = db.execute(
        "select r.run_key, x.kind, x.value from nflab_results x join nflab_runs r on r.id = x.run_id "
        "where x.metric='nats' and x.split='test'"
    ).fetchall()
    kinds = ("best", "final", "mean")  # mean: the last-N average of the toy protocol
    assert {(k, kind) for k, kind, _ in metrics} == {(r["run_key"], kind) for r in runs for kind in kinds}

    # leaderboard: two configurations (nice, realnvp), each the mean of its 2 seeds as stored
    board = _invoke("leaderboard", "--dataset", "8gaussians", "--json", "--no-reference")
    assert board.exit_code == 0, board.output
    rows = json.loads(board.stdout)
    assert sorted(r["family"] for r in rows) == ["nice", "realnvp"]
    for row in rows:
        values = [
            v
            for k, kind, v in metrics
            if kind == "best" and next(r for r in runs if r["run_key"] == k)["family"] == row["family"]
        ]
        assert row["n_seeds"] == 2
        assert row["mean"] == pytest.approx(sum(values) / 2)

    html = tmp_path / "board.html"
    assert _invoke("leaderboard", "--html", str(html)).exit_code == 0
    assert "8gaussians" in html.read_text()

    # running the same pipeline again resumes the campaign: nothing to redo
    again = _invoke("run", str(pipeline), "--json")
    assert again.exit_code == 0
    assert json.loads(again.stdout)["campaign_id"] == out["campaign_id"]
    assert db.execute("select count(*) from nflab_runs").fetchone()[0] == 4

    status = _invoke("status", out["campaign_id"][:8], "--json")
    assert json.loads(status.stdout)["summary"]["finished"] == 4
    logs = _invoke("logs", runs[0]["id"][:12], "--json")
    assert logs.exit_code == 0 and json.loads(logs.stdout)["run"]["run_key"] == runs[0]["run_key"]


def test_nan_run_fails_with_reason_and_others_finish(home: Path, tmp_path: Path, ray_local: None) -> None:
    pipeline = tmp_path / "nan.yaml"
    pipeline.write_text(
        PIPELINE.replace("name: cli-toy", "name: cli-nan").replace(
            "  train.seed: [0, 1]", "  train.lr: [1.0e-3, 1.0e+30]"
        )
    )
    result = _invoke("run", str(pipeline), "--json")
    assert result.exit_code == 1
    runs = json.loads(result.stdout)["runs"]
    failed = [r for r in runs if r["status"] == "failed"]
    assert len(runs) == 4 and len(failed) == 2
    assert all("non-finite" in r["error"] for r in failed)
    assert all(r["config"]["train"]["lr"] > 1 for r in failed)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name: x\ndataset: {name: 8gaussians\n", "bad.yaml:"),
        ("name: x\ndataset: {name: 8gaussians}\nmodel: {family: monotne}\n", "bad.yaml:3 model.family: 'monotne'"),
        ("name: x\ndataset: {name: 8gaussians}\nmodel: {family: nice}\ntrain: {steps: many}\n", "train.steps"),
        ("name: x\ndataset: {name: cifar10}\nmodel: {family: glow}\n", "cifar10"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(home: Path, tmp_path: Path, text: str, fragment: str) -> None:
    pipeline = tmp_path / "bad.yaml"
    pipeline.write_text(text)
    env = {**os.environ, "NFLAB_HOME": str(home), "NFLAB_DATA": str(tmp_path / "nodata")}
    proc = subprocess.run(
        [sys.executable, "-m", "nflab.cli", "run", str(pipeline)], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in proc.stderr
    assert not (home / "nflab.db").exists() and not (home / "mlflow.db").exists()


def test_read_commands(home: Path) -> None:
    shown = _invoke("config", "show", "--json")
    assert json.loads(shown.stdout)["home"] == str(home)
    models = json.loads(_invoke("models", "--json").stdout)
    assert {"nice", "realnvp", "glow", "maf"} <= set(models)
    assert models["glow"]["depth"]["default"] == 32
    assert _invoke("db", "upgrade").exit_code == 0
    assert (home / "nflab.db").exists()
    bad = CliRunner().invoke(app, ["leaderboard", "--metric", "accuracy"])
    assert bad.exit_code == 2


def test_logs_show_the_run_log_and_the_failure_reason(home: Path, tmp_path: Path, ray_local: None) -> None:
    pipeline = tmp_path / "nan.yaml"
    pipeline.write_text(PIPELINE.replace("name: cli-toy", "name: cli-logs").replace("  train.seed: [0, 1]\n", ""))
    result = _invoke("run", str(pipeline), "--set", "train.lr=1.0e+9", "--set", "model.family=nice", "--json")
    assert result.exit_code == 1
    (run,) = json.loads(result.stdout)["runs"]
    shown = _invoke("logs", run["run_key"])
    assert shown.exit_code == 0
    assert "start run" in shown.stdout and "failed: non-finite loss" in shown.stdout
    assert run["error"] in shown.stdout
