"""Team mode tuning: the study in its own PostgreSQL database (Optuna's RDB storage), nflab's store in another."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from nflab.cli import app
from nflab.store import Store
from tests.pg import PostgresServer

pytestmark = pytest.mark.timeout(600)

PIPELINE = """\
name: team-tune
dataset: {name: 8gaussians, test_samples: 200, validation_samples: 200}
model: {family: realnvp, preset: small}
train: {steps: 20, batch_size: 64, eval_every: 10, checkpoint_every: 20, log_every: 10}
eval: {batch_size: 200, samples: 200, average_last: 0}
resources: {cpu: 1, gpu: 0, retries: 0}
tune:
  space: {train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}}
  sampler: {kind: random, seed: 0}
  pruner: {kind: none}
  trials: 2
  parallel: 2
"""


def test_study_on_postgresql(
    pg_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ray_local: None
) -> None:
    db_url, optuna_url = pg_server.create_database(), pg_server.create_database()
    for var in ("MLFLOW_TRACKING_URI", "NFLAB_DATA", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NFLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NFLAB_DB_URL", db_url)
    monkeypatch.setenv("NFLAB_OPTUNA_URL", optuna_url)
    path = tmp_path / "team-tune.yaml"
    path.write_text(PIPELINE)
    result = CliRunner().invoke(app, ["tune", str(path), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["counts"] == {"complete": 2}
    study = optuna.load_study(study_name=shown["name"], storage=optuna_url)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert not (tmp_path / "home" / "optuna.journal").exists()
    with Store(db_url) as store:
        runs = store.list_runs(shown["campaign_id"])
    assert sorted(r["run_key"] for r in runs) == sorted(t["run_key"] for t in shown["trials"])
    assert {r["status"] for r in runs} == {"finished"}
