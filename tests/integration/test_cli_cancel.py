"""Campaigns that stop before their runs end (issue 17, items 2 and 4), embedded setup (local Ray, SQLite, MLflow):
Ctrl-C of ``nflab run`` and ``nflab cancel`` of a local submission leave the unfinished runs ``cancelled`` in the
store and KILLED in MLflow; a local driver that dies fails its campaign with a reason when ``status`` looks; a
catalog name given to ``submit`` runs that catalog pipeline. The two that wait for runs to start are slow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy.exc import OperationalError

from nflab.store import Store

pytestmark = pytest.mark.timeout(600)

LONG = """\
name: cancel-toy
dataset: {name: moons, test_samples: 200}
model: {family: maf, preset: small}
train: {steps: 10000000, batch_size: 64, eval_every: 50, checkpoint_every: 50, log_every: 10, seed: 0}
eval: {batch_size: 200, exact: true}
resources: {cpu: 1, gpu: 0, retries: 0}
"""


@pytest.fixture(autouse=True)
def _shared_mlflow(mlflow_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The session's MLflow database (created once: its schema takes seconds); each campaign has its experiment."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)


def env_for(home: Path) -> dict[str, str]:
    drop = ("NFLAB_DB_URL", "RAY_ADDRESS")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "NFLAB_HOME": str(home)}


def nflab(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nflab.cli", *args], capture_output=True, text=True, env=env_for(home), timeout=timeout
    )


def wait_for(what: str, check: Callable[[], Any], timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1.0)
    pytest.fail(f"{what} did not happen in {timeout} s")


def mlflow_statuses(home: Path, campaign_id: str) -> list[str]:
    with Store(f"sqlite:///{home / 'nflab.db'}", auto_migrate=False) as store:
        experiment_id = store.get_campaign(campaign_id)["mlflow_experiment_id"]
    client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    return [r.info.status for r in client.search_runs([experiment_id])]


def only_campaign(home: Path) -> dict[str, Any] | None:
    """The home's campaign once it has its MLflow experiment (the CLI creates and migrates the database)."""
    if not (home / "nflab.db").exists():
        return None
    with Store(f"sqlite:///{home / 'nflab.db'}", auto_migrate=False) as store:
        try:
            campaigns = store.list_campaigns()
        except OperationalError:  # no tables yet
            return None
        return campaigns[0] if campaigns and campaigns[0]["mlflow_experiment_id"] else None


def started_in_mlflow(home: Path, campaign_id: str) -> bool:
    return "RUNNING" in mlflow_statuses(home, campaign_id)


def assert_cancelled(home: Path, campaign_id: str) -> None:
    status = json.loads(nflab(home, "status", campaign_id, "--json").stdout)
    assert status["campaign"]["status"] == "cancelled"
    assert {r["status"] for r in status["runs"]} == {"cancelled"}
    assert mlflow_statuses(home, campaign_id) == ["KILLED"]


@pytest.mark.slow
def test_ctrl_c_cancels_the_runs_in_flight_in_the_store_and_in_mlflow(tmp_path: Path) -> None:
    home, pipeline = tmp_path / "home", tmp_path / "long.yaml"
    pipeline.write_text(LONG)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nflab.cli", "run", str(pipeline)],
        env=env_for(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: Ctrl-C in a terminal signals the whole group
    )
    try:
        camp = wait_for("a campaign", lambda: only_campaign(home))
        wait_for("the run's start in MLflow", lambda: started_in_mlflow(home, camp["id"]))
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr[-3000:]
    assert "interrupted" in stderr
    assert_cancelled(home, camp["id"])


@pytest.mark.slow
def test_cancel_of_a_submitted_catalog_pipeline_kills_its_mlflow_runs(tmp_path: Path) -> None:
    """``submit digits-quick`` (a catalog name, not a file here) runs that pipeline; cancel ends it everywhere."""
    home = tmp_path / "home"
    long_digits = ["--set", "train.steps=10000000", "--set", "train.eval_every=1000", "--set", "eval.samples=8"]
    out = nflab(home, "submit", "digits-quick", *long_digits, "--json")
    assert out.returncode == 0, out.stderr
    campaign_id = json.loads(out.stdout)["campaign_id"]
    wait_for("the runs' start in MLflow", lambda: mlflow_statuses(home, campaign_id) == ["RUNNING", "RUNNING"])
    cancelled = nflab(home, "cancel", campaign_id[:8])
    assert cancelled.returncode == 0, cancelled.stderr
    assert "2 runs cancelled" in cancelled.stdout
    status = json.loads(nflab(home, "status", campaign_id, "--json").stdout)
    assert status["campaign"]["status"] == "cancelled"
    assert {r["status"] for r in status["runs"]} == {"cancelled"}
    assert mlflow_statuses(home, campaign_id) == ["KILLED", "KILLED"]


def test_a_local_driver_that_dies_fails_its_campaign_with_the_reason(tmp_path: Path) -> None:
    home, pipeline = tmp_path / "home", tmp_path / "long.yaml"
    pipeline.write_text(LONG)
    out = nflab(home, "submit", str(pipeline), "--json")
    assert out.returncode == 0, out.stderr
    submitted = json.loads(out.stdout)
    pid = int(submitted["submission_id"].removeprefix("local:"))
    os.killpg(pid, signal.SIGKILL)  # an OOM kill, say: nothing of the driver's own clean-up runs
    listed = nflab(home, "status")  # every campaign's driver is looked at
    assert listed.returncode == 0, listed.stderr
    assert "failed" in listed.stdout and f"driver process {pid}" in listed.stdout
    with Store(f"sqlite:///{home / 'nflab.db'}") as store:
        camp = store.get_campaign(submitted["campaign_id"])
        runs = store.list_runs(camp["id"])
    assert camp["status"] == "failed"
    assert camp["error"].startswith(f"driver process {pid} ended: "), camp["error"]
    assert {r["status"] for r in runs} == {"failed"}
