"""Runs as real Ray tasks on a local Ray: a worker killed mid-run is retried and resumes from its checkpoint."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from nflab.workers import run_specs


def _kill_after_first_checkpoint(run_dir: Path, killed: list[int], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list((run_dir / "checkpoints").glob("step_*.pt")):
            pid = int((run_dir / "pid").read_text())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return
        time.sleep(0.01)


def _run_with_kill(spec: dict, workdir: Path, uri: str, experiment: str) -> tuple[dict, list, list, list]:
    results: dict[str, list[dict]] = {}
    started: list[str] = []
    progress: list[int] = []
    killed: list[int] = []
    killer = threading.Thread(target=_kill_after_first_checkpoint, args=(workdir / spec["run_key"], killed))
    killer.start()
    run_specs(
        [spec],
        workdir=workdir,
        tracking_uri=uri,
        experiment_name=experiment,
        run_ids={spec["run_key"]: "nflab-1"},
        on_result=lambda key, res: results.setdefault(key, []).append(res),
        on_progress=lambda key, step, total, metrics: progress.append(step),
        on_start=started.append,
    )
    killer.join()
    return results, started, progress, killed


def test_killed_worker_is_retried_and_resumes(ray_local, make_spec, workdir, mlflow_uri, experiment) -> None:
    spec = make_spec("ray-kill-r0", train__steps=300, train__checkpoint_every=20, train__eval_every=100)
    results, started, progress, killed = _run_with_kill(spec, workdir, mlflow_uri, experiment)
    assert len(killed) == 1
    assert list(results) == ["ray-kill-r0"] and len(results["ray-kill-r0"]) == 1  # recorded once
    result = results["ray-kill-r0"][0]
    assert result["status"] == "finished", result["error"]
    assert result["resumed_from"] is not None and result["resumed_from"] >= 20
    assert result["steps"] == 300
    assert int((workdir / "ray-kill-r0" / "pid").read_text()) != killed[0]
    assert started == ["ray-kill-r0"] and progress and max(progress) <= 300


def test_worker_death_beyond_retries_is_a_failed_result(ray_local, make_spec, workdir, mlflow_uri, experiment) -> None:
    spec = make_spec(
        "ray-dead-r0", train__steps=300, train__checkpoint_every=20, train__eval_every=100, resources__retries=0
    )
    results, _, _, killed = _run_with_kill(spec, workdir, mlflow_uri, experiment)
    assert len(killed) == 1
    [result] = results["ray-dead-r0"]
    assert result["status"] == "failed" and result["error"].startswith("worker died")
    assert result["mlflow_run_id"]
