"""Trials of a study as Ray tasks: submitted one by one, every evaluation relayed, a pruned one stopped at once.

The same task body (``ray_exec._run_in_task`` with ``every_evaluation``), resources and retries as a campaign's runs;
the differences a tuner needs:
evaluations are never throttled or coalesced (the pruner must see each one), the driver submits trials as the
sampler proposes them, and :meth:`TrialRunner.stop` stops one trial and ends its MLflow run as KILLED.

A stop is cooperative first: the mailbox answers the trial's next post with "stop" and the task raises
:class:`StopRequested`, returning its worker to Ray warm. Killing the task instead costs the next trial a fresh
worker process (9-12 s of CPU importing torch, the training stack and MLflow on this project's machines, for every
pruned trial). The task learns of the stop at its second post after the decision and announces that it is stopping
before it ends; one that has neither announced it nor ended within its grace period (the time between its last two
evaluations, or from its submission to its first, at least ``MIN_GRACE_S``) is cancelled by force, so a pruned trial
never runs past one evaluation interval (or 15 s). A task that announced its stop is never killed: it is writing
its records, and a force cancel that crosses a task's own end aborts the driver inside Ray (see
:func:`~nflab.workers.ray_exec.cancel_unfinished`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from .progress import MIN_INTERVAL_S, StopRequested
from .ray_exec import (
    _death_message,
    _recorded_run_id,
    _remote_run,
    _task_options,
    cancel_unfinished,
    finished_tasks,
    start_mailbox,
)
from .tracking import absolute_tracking_uri, prepare_tracking, with_retry

POLL_S = 0.5
MIN_GRACE_S = 15.0
CLOSE_WAIT_S = 60.0  # at close, how long trials that announced their stop get to end themselves
EVAL_KEYS = ("val_nats", "val_bpd")


def evaluation_reporter(mailbox: Any, interval_s: float = MIN_INTERVAL_S) -> Callable[[str, int, int, dict], None]:
    """A progress callback that posts every evaluation at once and other steps at most once per ``interval_s``, and
    raises :class:`StopRequested` once a post was answered "stop". Answers are read only when already there (a
    task blocked in ``ray.get`` hands its CPU back and Ray starts another worker process)."""
    last = [0.0]
    answers: list[Any] = []  # futures of the posts not yet answered

    def progress(key: str, step: int, total: int, metrics: dict) -> None:
        if any(a.done() and a.exception() is None and a.result() for a in answers):
            mailbox.report.remote("stopping", key, step, total, {})  # the driver no longer kills it
            raise StopRequested(f"stopped at step {step}: the tuning driver pruned this trial")
        answers[:] = [a for a in answers if not a.done()]
        now = time.monotonic()
        if any(k in metrics for k in EVAL_KEYS) or now - last[0] >= interval_s or step >= total:
            last[0] = now
            answers.append(mailbox.report.remote("progress", key, step, total, metrics).future())

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
        self.stopping: dict[Any, tuple[str, float]] = {}  # tasks asked to stop -> run_key, when they are killed
        self.evaluated: dict[str, list[float]] = {}  # run_key -> times of its last two evaluations (or submission)

    def submit(self, spec: dict, run_id: str) -> None:
        ref = _remote_run.options(**_task_options(spec)).remote(
            spec, self.workdir, self.uri, self.experiment_name, run_id, self.data_root, self.mailbox,
            every_evaluation=True,
        )  # fmt: skip
        self.in_flight[ref] = spec["run_key"]
        self.evaluated[spec["run_key"]] = [time.monotonic()]  # its first interval counts its set-up too

    def poll(self, timeout: float = POLL_S) -> tuple[list[tuple[str, int, dict]], list[tuple[str, dict]]]:
        """``(progress events (run_key, step, metrics) in order, results (run_key, RunResult))`` since the last poll."""
        results: list[tuple[str, dict]] = []
        ready = finished_tasks([*self.in_flight, *self.stopping], timeout)
        posts = ray.get(self.mailbox.drain.remote())
        events = [
            (key, step, metrics)
            for kind, key, step, _total, metrics in posts
            if kind == "progress" and key in self.in_flight.values()
        ]
        ending = {key for kind, key, *_ in posts if kind == "stopping"}
        now = time.monotonic()
        for key, _step, metrics in events:
            if any(k in metrics for k in EVAL_KEYS):
                self.evaluated[key] = [*self.evaluated.get(key, [])[-1:], now]
        for ref, (key, _deadline) in list(self.stopping.items()):
            if key in ending:  # announced its stop: it ends itself, never killed
                self.stopping[ref] = (key, math.inf)
        overdue = [r for r, (_key, deadline) in self.stopping.items() if r not in ready and deadline < now]
        cancel_unfinished(overdue)  # past its grace without a word
        for ref in [*overdue, *(r for r in ready if r in self.stopping)]:
            del self.stopping[ref]
        for ref in [r for r in ready if r in self.in_flight]:
            key = self.in_flight.pop(ref)
            self.evaluated.pop(key, None)
            try:
                result = ray.get(ref)
            except (ray.exceptions.RayError, OSError) as exc:
                from .execute import failed_result

                result = failed_result(_death_message(exc), mlflow_run_id=_recorded_run_id(self.workdir, key))
            results.append((key, result))
        return events, results

    def stop(self, run_key: str, tags: dict[str, str] | None = None) -> str | None:
        """Ask the task of ``run_key`` to stop (cancelled by force after its grace period, see the module docstring)
        and end its MLflow run as KILLED with ``tags``; returns the MLflow run id (None when the run had not opened
        one yet). Its result is not returned by :meth:`poll`."""
        times = self.evaluated.pop(run_key, [])
        grace = max(MIN_GRACE_S, times[-1] - times[0]) if len(times) == 2 else MIN_GRACE_S
        self.mailbox.stop.remote(run_key)
        for ref, key in list(self.in_flight.items()):
            if key == run_key:
                self.stopping[ref] = (run_key, time.monotonic() + grace)
                del self.in_flight[ref]
        mlflow_run_id = _recorded_run_id(self.workdir, run_key)
        if mlflow_run_id is not None:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=self.uri)
            for name, value in (tags or {}).items():
                with_retry(client.set_tag, mlflow_run_id, name, value)
            with_retry(client.set_terminated, mlflow_run_id, "KILLED")
        return mlflow_run_id

    def close(self, *, wait: bool = True) -> None:
        """Cancel whatever still runs and drop the mailbox; with ``wait``, trials asked to stop first get the rest of
        their grace period to end themselves (their runs finish their records; the last trial pruned just before a
        study ends is not killed mid-write)."""
        deadline = max((d for _key, d in self.stopping.values()), default=0.0)
        remaining = min(deadline - time.monotonic(), CLOSE_WAIT_S)
        if wait and remaining > 0:
            ray.wait(list(self.stopping), num_returns=len(self.stopping), timeout=remaining)
        cancel_unfinished([*self.in_flight, *self.stopping])
        self.in_flight.clear()
        self.stopping.clear()
        ray.kill(self.mailbox)
