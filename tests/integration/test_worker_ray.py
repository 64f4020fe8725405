"""Runs as real Ray tasks on a local Ray: a worker killed mid-run is retried and resumes from its checkpoint."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

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
    assert started == ["ray-kill-r0"] * 2 and progress and max(progress) <= 300  # one start per attempt


def test_worker_death_beyond_retries_is_a_failed_result(ray_local, make_spec, workdir, mlflow_uri, experiment) -> None:
    spec = make_spec(
        "ray-dead-r0", train__steps=300, train__checkpoint_every=20, train__eval_every=100, resources__retries=0
    )
    results, _, _, killed = _run_with_kill(spec, workdir, mlflow_uri, experiment)
    assert len(killed) == 1
    [result] = results["ray-dead-r0"]
    assert result["status"] == "failed" and result["error"].startswith("worker died")
    assert result["mlflow_run_id"]


def test_fast_failing_runs_see_start_then_result_and_no_late_start(
    ray_local, make_spec, workdir, mlflow_uri, experiment
) -> None:
    """A run that fails at step 2 returns before its "start" event reaches the driver; the late event must not
    reopen it (it once set a failed run back to ``running`` in the store)."""
    specs = [
        make_spec(f"ray-fast-r{i}", seed=i, train__lr=1e30, train__steps=5, resources__retries=0) for i in range(6)
    ]
    events: list[tuple[str, str]] = []
    run_specs(
        specs,
        workdir=workdir,
        tracking_uri=mlflow_uri,
        experiment_name=experiment,
        run_ids={s["run_key"]: f"nflab-{i}" for i, s in enumerate(specs)},
        on_result=lambda key, res: events.append(("result:" + res["status"], key)),
        on_start=lambda key: events.append(("start", key)),
    )
    time.sleep(0.5)  # a late event would have been delivered by now had the driver still been listening
    for spec in specs:
        mine = [kind for kind, key in events if key == spec["run_key"]]
        assert mine == ["start", "result:failed"], (spec["run_key"], mine)


def test_a_stopped_trial_announces_its_stop_before_it_ends(ray_local) -> None:
    """A pruned trial's progress callback posts "stopping" to the mailbox before it raises: the driver then never
    cancels it by force (a force cancel that crosses the task's own end aborts the driver inside Ray)."""
    import ray

    from nflab.workers.progress import StopRequested
    from nflab.workers.ray_exec import start_mailbox
    from nflab.workers.trials import evaluation_reporter

    mailbox = start_mailbox()
    try:
        progress = evaluation_reporter(mailbox)
        progress("t0003-a", 100, 1000, {"val_nats": 4.2})
        ray.get(mailbox.stop.remote("t0003-a"))
        progress("t0003-a", 200, 1000, {"val_nats": 4.1})  # its answer says stop; read at the next post
        deadline = time.monotonic() + 30
        with pytest.raises(StopRequested):
            while time.monotonic() < deadline:
                progress("t0003-a", 210, 1000, {})
                time.sleep(0.05)
        time.sleep(0.5)
        kinds = [(kind, key) for kind, key, *_ in ray.get(mailbox.drain.remote())]
        assert kinds[-1] == ("stopping", "t0003-a")
        assert kinds.count(("stopping", "t0003-a")) == 1
    finally:
        ray.kill(mailbox)


def test_cancel_unfinished_spares_finished_tasks(ray_local) -> None:
    """Only tasks still running are cancelled: a finished one keeps its result."""
    import ray

    from nflab.workers.ray_exec import cancel_unfinished

    @ray.remote(num_cpus=0)
    def pause(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    done, running = pause.remote(0.0), pause.remote(60.0)
    ray.wait([done], timeout=30)
    cancel_unfinished([done, running])
    assert ray.get(done) == 0.0
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(running, timeout=30)
