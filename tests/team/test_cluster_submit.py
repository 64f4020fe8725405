"""``nflab submit`` / ``status`` / ``cancel`` against a real Ray cluster (``ray start --head`` on 127.0.0.1, Ray 2.60
token authentication on) in team mode: nflab's store on PostgreSQL, MLflow in SQLite (issue 17, items 2 and 4).

The cluster's environment (see conftest.py) supplies the store URLs to the jobs; the client has the same settings
and the token (in ``RAY_AUTH_TOKEN``, in a file named by ``RAY_AUTH_TOKEN_PATH``, in ``$HOME/.ray/auth_token`` or
nowhere). The token must never show up in any output, row, MLflow record, log or job description. The tests poll
the job through the Jobs API themselves (cheap) and call the CLI once where its answer is what is tested.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from nflab.store import Store
from tests.raycluster import free_port
from tests.team.conftest import TeamCluster

pytestmark = pytest.mark.timeout(600)

PIPELINE = """\
name: cluster-toy
dataset: {{name: moons, test_samples: 300}}
model: {{family: maf, preset: small}}
train: {{steps: {steps}, batch_size: 64, eval_every: 20, checkpoint_every: 20, log_every: 10, seed: 0}}
eval: {{batch_size: 300, exact: true}}
resources: {{cpu: 1, gpu: 0, retries: 0}}
"""
TINY_DIGITS = [
    "--set",
    "train.seed=0",
    "--set",
    "train.steps=10",
    "--set",
    "train.eval_every=10",
    "--set",
    "train.checkpoint_every=10",
]
TINY_DIGITS += ["--set", "train.log_every=5", "--set", "eval.samples=8"]


def nflab(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nflab.cli", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def status_json(env: dict[str, str], campaign_id: str) -> dict[str, Any]:
    out = nflab(env, "status", campaign_id, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def write_pipeline(cluster: TeamCluster, name: str, steps: int) -> Path:
    path = Path(cluster.settings["NFLAB_HOME"]).parent / f"{name}.yaml"
    path.write_text(PIPELINE.format(steps=steps))
    return path


def jobs(cluster: TeamCluster) -> Any:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(cluster.ray.dashboard_url, headers={"Authorization": f"Bearer {cluster.ray.token}"})


def wait_job(cluster: TeamCluster, submission_id: str, timeout: float) -> str:
    """The job's final status."""
    client, deadline = jobs(cluster), time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get_job_status(submission_id)
        if status.is_terminal():
            return status.value
        time.sleep(1.0)
    pytest.fail(f"job {submission_id} did not end in {timeout} s")


def mlflow_runs(cluster: TeamCluster, experiment_id: str) -> list[Any]:
    return MlflowClient(tracking_uri=cluster.settings["MLFLOW_TRACKING_URI"]).search_runs([experiment_id])


def db_text(url: str) -> str:
    """Every row of every table of the database, as text (to look for a secret in it)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            tables = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars()
            return "\n".join(str(list(conn.execute(text(f'SELECT * FROM "{t}"')))) for t in list(tables))
    finally:
        engine.dispose()


def assert_secrets_nowhere(cluster: TeamCluster, outputs: list[str], submission_id: str) -> None:
    """Neither the Ray token nor the database password is in any output, row, MLflow record, file or job record."""
    token = cluster.ray.token
    password = make_url(cluster.settings["NFLAB_DB_URL"]).password
    assert token and len(token) == 32 and password and len(password) >= 16
    info = jobs(cluster).get_job_info(submission_id)
    job_text = json.dumps([info.entrypoint, info.metadata, info.runtime_env], default=str)
    job_text += jobs(cluster).get_job_logs(submission_id)
    stored = db_text(cluster.settings["NFLAB_DB_URL"])
    mlflow_db = Path(cluster.settings["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///")).read_bytes()
    files = [f for f in Path(cluster.settings["NFLAB_HOME"]).rglob("*") if f.is_file()]
    for secret in (token, password):
        for text_ in [*outputs, job_text, stored]:
            assert secret not in text_
        assert secret.encode() not in mlflow_db
        for file in files:
            assert secret.encode() not in file.read_bytes(), file


def test_a_missing_or_wrong_token_is_one_line_and_writes_nothing(team_cluster: TeamCluster, pg_url: str) -> None:
    pipeline = write_pipeline(team_cluster, "never", 20)
    cases = {
        "none": (team_cluster.client_env(token="none", NFLAB_DB_URL=pg_url), "no token was found"),
        "wrong": (
            team_cluster.client_env(token="none", NFLAB_DB_URL=pg_url, RAY_AUTH_TOKEN="0" * 32),
            "refused the token",
        ),
        "unreachable": (team_cluster.client_env(token="env", NFLAB_DB_URL=pg_url), "cannot be reached"),
    }
    for name, (env, expected) in cases.items():
        target = f"http://127.0.0.1:{free_port()}" if name == "unreachable" else team_cluster.ray.dashboard_url
        started = time.monotonic()
        out = nflab(env, "submit", str(pipeline), "--address", target)
        assert out.returncode == 2, (name, out.stdout, out.stderr)
        assert time.monotonic() - started < 60
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --address: "), (name, out.stderr)
        assert expected in lines[0], (name, lines[0])
        assert "RAY_AUTH_TOKEN" in lines[0] or name == "unreachable"
        assert team_cluster.ray.token not in out.stdout + out.stderr and "0" * 32 not in out.stderr
        with Store(pg_url) as store:
            assert store.list_campaigns() == [], name


def test_cancel_stops_the_job_at_the_stored_address_and_kills_the_mlflow_runs(team_cluster: TeamCluster) -> None:
    """Token from RAY_AUTH_TOKEN_PATH; cancel runs with a RAY_ADDRESS that points nowhere: the stored one counts."""
    env = team_cluster.client_env(token="file")
    pipeline = write_pipeline(team_cluster, "long", 10_000_000)
    out = nflab(env, "submit", str(pipeline), "--address", team_cluster.ray.dashboard_url, "--json")
    assert out.returncode == 0, out.stderr
    submitted = json.loads(out.stdout)
    campaign_id = submitted["campaign_id"]
    with Store(team_cluster.settings["NFLAB_DB_URL"]) as store:
        camp = store.get_campaign(campaign_id)
    assert camp["jobs_address"] == team_cluster.ray.dashboard_url
    deadline = time.monotonic() + 240
    while not [r for r in mlflow_runs(team_cluster, camp["mlflow_experiment_id"]) if r.info.status == "RUNNING"]:
        assert time.monotonic() < deadline, "the run never started in MLflow"
        time.sleep(1.0)

    elsewhere = {**env, "RAY_ADDRESS": f"http://127.0.0.1:{free_port()}"}
    cancelled = nflab(elsewhere, "cancel", campaign_id[:8])
    assert cancelled.returncode == 0, cancelled.stderr
    assert jobs(team_cluster).get_job_status(submitted["submission_id"]).value == "STOPPED"
    status = status_json(env, campaign_id)
    assert (status["campaign"]["status"], status["campaign"]["error"]) == ("cancelled", "cancelled by the user")
    assert {r["status"] for r in status["runs"]} == {"cancelled"}
    assert [r.info.status for r in mlflow_runs(team_cluster, camp["mlflow_experiment_id"])] == ["KILLED"]
    outputs = [out.stdout, out.stderr, cancelled.stdout, cancelled.stderr]
    assert_secrets_nowhere(team_cluster, outputs, submitted["submission_id"])


@pytest.mark.slow
def test_a_job_that_fails_fails_the_campaign_with_its_reason(team_cluster: TeamCluster, pg_url: str) -> None:
    """Token from Ray's default file ($HOME/.ray/auth_token). The client records the campaign in another database
    than the cluster's: the job cannot find it and fails; ``status`` turns the pending campaign into a failed one,
    with the job's last output as the reason."""
    env = team_cluster.client_env(token="home", NFLAB_DB_URL=pg_url)
    pipeline = write_pipeline(team_cluster, "short", 20)
    out = nflab(env, "submit", str(pipeline), "--address", team_cluster.ray.dashboard_url, "--json")
    assert out.returncode == 0, out.stderr
    submitted = json.loads(out.stdout)
    campaign_id = submitted["campaign_id"]
    assert wait_job(team_cluster, submitted["submission_id"], timeout=240) == "FAILED"
    status = status_json(env, campaign_id)
    camp = status["campaign"]
    assert camp["status"] == "failed"
    assert "FAILED" in camp["error"] and "is not in the store" in camp["error"], camp["error"]
    assert {r["status"] for r in status["runs"]} == {"failed"}
    shown = nflab(env, "status", campaign_id)
    assert "is not in the store" in shown.stdout.replace("\n", "")
    assert team_cluster.ray.token not in shown.stdout + camp["error"]


@pytest.mark.slow
def test_submit_a_catalog_pipeline_runs_on_the_cluster_and_lands_in_the_stores(team_cluster: TeamCluster) -> None:
    """Token from RAY_AUTH_TOKEN; a catalog name is sent as its resolved file; the job's results are recorded."""
    env = team_cluster.client_env(token="env")
    started = time.monotonic()
    out = nflab(env, "submit", "digits-quick", *TINY_DIGITS, "--address", team_cluster.ray.dashboard_url, "--json")
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started < 60
    submitted = json.loads(out.stdout)
    campaign_id = submitted["campaign_id"]
    assert submitted["submission_id"] == f"nflab-{campaign_id}"
    assert wait_job(team_cluster, submitted["submission_id"], timeout=400) == "SUCCEEDED"
    status = status_json(env, campaign_id)
    assert status["campaign"]["status"] == "finished", status["campaign"]
    assert status["campaign"]["jobs_address"] == team_cluster.ray.dashboard_url
    assert [r["status"] for r in status["runs"]] == ["finished", "finished"]
    with Store(team_cluster.settings["NFLAB_DB_URL"]) as store:
        runs = store.list_runs(campaign_id, with_results=True)
    assert all(r["results"] for r in runs)
    tracked = mlflow_runs(team_cluster, status["campaign"]["mlflow_experiment_id"])
    assert sorted(r.info.status for r in tracked) == ["FINISHED", "FINISHED"]
    listed = nflab(env, "status")
    outputs = [out.stdout, out.stderr, listed.stdout, listed.stderr]
    assert_secrets_nowhere(team_cluster, outputs, submitted["submission_id"])
