"""Trials of a study as Ray tasks: submitted one by one, every evaluation relayed, a pruned one stopped at once.

The same task body (``ray_exec._run_in_task`` with ``every_evaluation``), resources and retries as a campaign's runs;
the differences a tuner needs:
evaluations are never throttled or coalesced (the pruner must see each one), the driver submits trials as the
sampler proposes them, and :meth:`TrialRunner.stop` cancels one task (its worker process is killed, so it stops
within one evaluation interval) and ends its MLflow run as KILLED.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from .progress import MIN_INTERVAL_S
from .ray_exec import _death_message, _recorded_run_id, _remote_run, _task_options, finished_tasks, start_mailbox
from .tracking import absolute_tracking_uri, prepare_tracking, with_retry

POLL_S = 0.5
EVAL_KEYS = ("val_nats", "val_bpd")


def evaluation_reporter(mailbox: Any, interval_s: float = MIN_INTERVAL_S) -> Callable[[str, int, int, dict], None]:
    """A progress callback that posts every evaluation at once and other steps at most once per ``interval_s``."""
    last = [0.0]

    def progress(key: str, step: int, total: int, metrics: dict) -> None:
        now = time.monotonic()
        if any(k in metrics for k in EVAL_KEYS) or now - last[0] >= interval_s or step >= total:
            last[0] = now
            mailbox.report.remote("progress", key, step, total, metrics)

    return progress


class TrialRunner:
    """Runs trial specs as Ray tasks (call ``ensure_ray`` first); :meth:`poll` returns what happened since."""

    def __init__(self, *, workdir: str | Path, tracking_uri: str, experiment_name: str, data_root: str | None) -> None:
        self.workdir = str(workdir) if "://" in str(workdir) else str(Path(workdir).resolve())  # run storage
        self.uri = absolute_tracking_uri(tracking_uri)
        self.experiment_name = experiment_name
        self.data_root = str(Path(data_root).resolve()) if data_root else None
        prepare_tracking(self.uri, experiment_name)
        self.mailbox = start_mailbox()
        self.in_flight: dict[Any, str] = {}

    @property
    def running(self) -> int:
        return len(self.in_flight)

    def submit(self, spec: dict, run_id: str) -> None:
        ref = _remote_run.options(**_task_options(spec)).remote(
            spec, self.workdir, self.uri, self.experiment_name, run_id, self.data_root, self.mailbox,
            every_evaluation=True,
        )  # fmt: skip
        self.in_flight[ref] = spec["run_key"]

    def poll(self, timeout: float = POLL_S) -> tuple[list[tuple[str, int, dict]], list[tuple[str, dict]]]:
        """``(progress events (run_key, step, metrics) in order, results (run_key, RunResult))`` since the last poll."""
        results: list[tuple[str, dict]] = []
        ready = finished_tasks(list(self.in_flight), timeout)
        events = [
            (key, step, metrics)
            for kind, key, step, _total, metrics in ray.get(self.mailbox.drain.remote())
            if kind == "progress" and key in self.in_flight.values()
        ]
        for ref in ready:
            key = self.in_flight.pop(ref)
            try:
                result = ray.get(ref)
            except (ray.exceptions.RayError, OSError) as exc:
                from .execute import failed_result

                result = failed_result(_death_message(exc), mlflow_run_id=_recorded_run_id(self.workdir, key))
            results.append((key, result))
        return events, results

    def stop(self, run_key: str, tags: dict[str, str] | None = None) -> str | None:
        """Cancel the task of ``run_key`` (force: its worker is killed) and end its MLflow run as KILLED with
        ``tags``; returns the MLflow run id (None when the run had not opened one yet)."""
        for ref, key in list(self.in_flight.items()):
            if key == run_key:
                ray.cancel(ref, force=True)
                del self.in_flight[ref]
        mlflow_run_id = _recorded_run_id(self.workdir, run_key)
        if mlflow_run_id is not None:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=self.uri)
            for name, value in (tags or {}).items():
                with_retry(client.set_tag, mlflow_run_id, name, value)
            with_retry(client.set_terminated, mlflow_run_id, "KILLED")
        return mlflow_run_id

    def close(self) -> None:
        """Cancel whatever still runs and drop the mailbox."""
        for ref in self.in_flight:
            ray.cancel(ref, force=True)
        self.in_flight.clear()
        ray.kill(self.mailbox)
