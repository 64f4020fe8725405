"""``nflab submit`` returns at once with a campaign id; the campaign then runs in the background to completion,
and ``nflab cancel`` stops a submitted campaign and marks its unfinished runs cancelled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

PIPELINE = """\
name: submit-toy
dataset: {{name: moons, test_samples: 300}}
model: {{family: maf, preset: small}}
train: {{steps: {steps}, batch_size: 64, eval_every: 20, checkpoint_every: 20, log_every: 10, seed: 0}}
eval: {{batch_size: 300, exact: true}}
resources: {{cpu: 1, gpu: 0, retries: 0}}
"""


def _nflab(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NFLAB_DB_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env["NFLAB_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "nflab.cli", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def _wait_for(home: Path, campaign_id: str, done: set[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = json.loads(_nflab(home, "status", campaign_id, "--json").stdout)
        if status["campaign"]["status"] in done:
            return status
        time.sleep(1.0)
    pytest.fail(f"campaign {campaign_id} did not reach {done} in {timeout} s")


# slow (about 50 s each on 2 cores): submit and cancel through a cluster's Jobs API stay in the default suite
# (tests/team/test_cluster_submit.py); these two drive the local background driver.
@pytest.mark.slow
def test_submit_returns_at_once_and_the_campaign_finishes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(PIPELINE.format(steps=40))
    started = time.monotonic()
    out = _nflab(home, "submit", str(pipeline), "--json")
    assert out.returncode == 0, out.stderr
    submitted = json.loads(out.stdout)
    assert submitted["submission_id"].startswith("local:")
    assert time.monotonic() - started < 60
    status = _wait_for(home, submitted["campaign_id"], {"finished", "failed"}, timeout=240)
    assert status["campaign"]["status"] == "finished"
    assert [r["status"] for r in status["runs"]] == ["finished"]


@pytest.mark.slow
def test_cancel_stops_a_submitted_campaign(tmp_path: Path) -> None:
    home = tmp_path / "home"
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(PIPELINE.format(steps=200000))
    submitted = json.loads(_nflab(home, "submit", str(pipeline), "--json").stdout)
    campaign_id = submitted["campaign_id"]
    _wait_for(home, campaign_id, {"running"}, timeout=120)
    cancelled = _nflab(home, "cancel", campaign_id[:8])
    assert cancelled.returncode == 0, cancelled.stderr
    pid = int(submitted["submission_id"].split(":", 1)[1])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            break
        time.sleep(0.5)
    status = json.loads(_nflab(home, "status", campaign_id, "--json").stdout)
    assert status["campaign"]["status"] == "cancelled"
    assert {r["status"] for r in status["runs"]} == {"cancelled"}
