"""Team mode end to end: real campaigns through the CLI on PostgreSQL (local Ray, MLflow on SQLite).

A run that evaluates and checkpoints at the same step writes a step checkpoint and the best checkpoint at that
step: both must be recorded (PostgreSQL once refused the pair and left the run ``running`` forever).
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from typer.testing import CliRunner

from nflab.cli import app
from nflab.store import Store

pytestmark = pytest.mark.timeout(600)

PIPELINE = """\
name: team-e2e
dataset: {name: 8gaussians, test_samples: 300}
model: {family: realnvp, preset: small}
train: {steps: 20, batch_size: 64, eval_every: 10, checkpoint_every: 10, log_every: 10}
eval: {batch_size: 300, exact: true}
resources: {cpu: 1, gpu: 0, retries: 0}
matrix:
  model.family: [nice, realnvp]
"""


@pytest.fixture
def team_env(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for var in ("MLFLOW_TRACKING_URI", "NFLAB_OPTUNA_URL", "NFLAB_DATA", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NFLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NFLAB_DB_URL", pg_url)
    return pg_url


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout


def test_campaign_with_best_and_step_checkpoint_at_one_step(team_env: str, tmp_path: Path, ray_local: None) -> None:
    pipeline = tmp_path / "team.yaml"
    pipeline.write_text(PIPELINE)
    code, out = _cli("run", str(pipeline), "--json")
    assert code == 0, out
    runs = json.loads(out)["runs"]
    assert len(runs) == 2 and {r["status"] for r in runs} == {"finished"}

    with Store(team_env) as store:
        for summary in runs:
            run = store.get_run(summary["id"])
            assert run["status"] == "finished" and run["error"] is None
            kinds = {(c["step"], c["kind"]) for c in run["checkpoints"]}
            best_steps = {step for step, kind in kinds if kind == "best"}
            assert {(10, "step"), (20, "step")} <= kinds and len(best_steps) == 1
            assert (best_steps.pop(), "step") in kinds  # the best file shares its step with a step file
            assert all(len(c["sha256"]) == 64 for c in run["checkpoints"])
            status = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}").get_run(run["mlflow_run_id"])
            assert status.info.status == "FINISHED"

    # the same pipeline again: both runs are already finished, nothing re-runs; the leaderboard has both rows
    code, out = _cli("run", str(pipeline), "--json")
    assert code == 0, out
    code, out = _cli("leaderboard", "--json", "--no-reference")
    assert code == 0, out
    rows = json.loads(out)
    assert sorted(r["family"] for r in rows) == ["nice", "realnvp"] and all(r["n_seeds"] == 1 for r in rows)

    # a --fresh re-run of the same seeds replaces them on the leaderboard, it does not add seeds
    code, out = _cli("run", str(pipeline), "--fresh", "--json")
    assert code == 0, out
    code, out = _cli("leaderboard", "--json", "--no-reference")
    assert all(r["n_seeds"] == 1 for r in json.loads(out))

    # run keys now name a run in each campaign: ambiguous without --campaign (one line, exit 2), found with it
    key, campaign = runs[0]["run_key"], runs[0]["campaign_id"]
    result = CliRunner().invoke(app, ["logs", key])
    assert result.exit_code == 2 and "matches several runs" in result.stderr and "--campaign" in result.stderr
    code, out = _cli("logs", key, "--campaign", campaign[:8], "--json")
    assert code == 0 and json.loads(out)["run"]["campaign_id"] == campaign
