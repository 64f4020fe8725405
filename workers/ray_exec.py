"""Running many specs: one Ray task per run (``run_specs``) or sequentially in-process (``run_specs_inline``).

Ray tasks ask for ``resources.cpu`` CPUs and ``resources.gpu`` GPUs (fractional allowed; it does not split GPU
memory) and are retried ``resources.retries`` times when their worker (or its node) dies
(``retry_exceptions=False``: an exception is a result, not a reason to retry). A retried task, on any node,
resumes from the run's newest checkpoint in run storage (``workdir``: a local folder in the embedded default, a
mount, or an ``s3://``/``gs://`` URI: ``nflab.workers.runfiles``).

Runs are submitted longest first by their declared budget (``train.steps × train.batch_size``), a bounded window
at a time, so that the long runs do not form an unpaired tail. The driver is the single writer: it collects every
finished task of a poll in one ``ray.wait`` and hands each RunResult to ``on_result``; bookkeeping is by dict
(no scan of all runs per event). Tasks report start and step-level progress to a small ``ProgressActor`` that the
driver polls, so that the platform can show progress without the tasks writing to its store.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from .progress import ProgressActor, throttled_reporter
from .raynet import AUTH_HELP, RayAddressError, check_address, enable_token_auth_if_available
from .storage import Folder, check_uri, join
from .tracking import absolute_tracking_uri, prepare_tracking

OnResult = Callable[[str, dict], None]
OnProgress = Callable[[str, int, int, dict], None]
OnStart = Callable[[str], None]
POLL_S = 1.0
MIN_WINDOW = 64  # tasks in flight at least (default window: max(MIN_WINDOW, 4 × the cluster's CPUs))


def ensure_ray(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Connect to the Ray cluster at ``address`` (or ``RAY_ADDRESS``), or start a new local Ray when neither is set.

    Without an address the local Ray is always a new one (``address="local"``): a bare ``ray.init()`` would attach
    to whatever cluster Ray's temp folder remembers (somebody's ``ray start``, or a dead one it retries for
    minutes). A configured address is probed first: unreachable, or refused, it raises :class:`RayAddressError`
    (one line) within seconds. Nothing happens when Ray is already initialised.
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    common: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False, "configure_logging": True}
    if address is None or address == "local":
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **common)
        return
    check_address(address)
    enable_token_auth_if_available()
    try:
        ray.init(address=address, **common)
    except (ConnectionError, ray.exceptions.AuthenticationError) as exc:
        raise RayAddressError(
            f"Ray address: {address!r} refused the connection ({_first_line(exc)}); if the cluster uses token "
            f"authentication, {AUTH_HELP}"
        ) from None


def _first_line(exc: BaseException) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def node_capacities() -> list[dict[str, float]]:
    """``{"cpu": …, "gpu": …}`` of every alive node of the connected Ray cluster (call :func:`ensure_ray` first)."""
    return [
        {"cpu": float(n["Resources"].get("CPU", 0)), "gpu": float(n["Resources"].get("GPU", 0))}
        for n in ray.nodes()
        if n.get("Alive")
    ]


def _run_in_task(
    spec: dict,
    workdir: str,
    tracking_uri: str,
    experiment_name: str,
    run_id: str,
    data_root: str | None,
    mailbox: Any,
    every_evaluation: bool = False,
) -> dict:
    """Body of the Ray task (campaign runs and study trials): announce the start, fit torch's threads to the task,
    then execute the run, reporting progress to the mailbox (``every_evaluation``: each evaluation at once, for a
    pruner; otherwise throttled)."""
    from .execute import execute_run  # here, not at the top: the driver never imports torch's training stack
    from .trials import evaluation_reporter

    reporter = evaluation_reporter if every_evaluation else throttled_reporter
    node = ray.get_runtime_context().get_node_id()
    attempt = {"attempt": f"{node}:{os.getpid()}"}  # a retry runs in another process: another attempt
    # Posted, never awaited: a task blocked in ray.get hands its CPU back to the raylet, which then starts a new
    # worker process for a queued run (oversubscribed cores and a fresh process paying torch's and MLflow's lazy
    # imports). The mailbox is alive before any task is submitted (see start_mailbox()), so the call leaves at once;
    # the relay puts a start before its run's result if the result arrives first. No mailbox: progress is lost.
    mailbox.report.remote("start", spec["run_key"], 0, 0, attempt)
    fit_threads(_task_options(spec)["num_cpus"])

    return execute_run(
        spec,
        workdir=workdir,
        tracking_uri=tracking_uri,
        experiment_name=experiment_name,
        nflab_run_id=run_id,
        data_root=data_root,
        progress=reporter(mailbox),
        where=f"Ray node {node}",
    )


_remote_run = ray.remote(_run_in_task)


def _task_options(spec: dict) -> dict[str, Any]:
    res = spec["config"]["resources"]
    return {
        "num_cpus": float(res["cpu"]),
        "num_gpus": float(res["gpu"]),
        "max_retries": int(res["retries"]),
        "retry_exceptions": False,
        "name": f"nflab:{spec['run_key']}",
    }


def _death_message(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = next((line for line in text if line.strip()), "")
    if isinstance(exc, ray.exceptions.RayTaskError):
        return f"task error: {first}"[:500]
    return f"worker died: {type(exc).__name__}: {first}"[:500]


def fit_threads(num_cpus: float) -> None:
    """Torch's intra-op threads = the CPUs the task holds (at least 1); inter-op threads once per process.

    A pooled Ray worker keeps torch's thread pools across tasks; left alone they follow the machine's core count
    (or whatever the previous task set), which oversubscribes the cores the scheduler handed out.
    """
    import torch

    n = max(1, int(num_cpus))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    with contextlib.suppress(RuntimeError):  # already set (or used) in this process: it can be set only once
        torch.set_num_interop_threads(n)


def budget(spec: dict) -> float:
    """A run's declared budget: ``train.steps × train.batch_size`` (0 when not declared)."""
    train = (spec.get("config") or {}).get("train") or {}
    return float(train.get("steps") or 0) * float(train.get("batch_size") or 0)


def longest_first(specs: list[dict]) -> list[dict]:
    """``specs`` ordered by declared budget, largest first (stable: equal budgets keep their order)."""
    return sorted(specs, key=budget, reverse=True)


def _recorded_run_id(workdir: str, run_key: str) -> str | None:
    try:
        return json.loads(Folder.of(join(workdir, run_key)).read_text("run.json") or "")["mlflow_run_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


class RunEventRelay:
    """Turns the tasks' mailbox events and results into the callbacks, in a safe order per run.

    ``on_start`` is called once per attempt of a run (a "start" event naming another ``attempt`` than the first is
    Ray retrying the task after its worker or node died) and always before its ``on_result``; nothing is delivered
    for a run after its result. A task that fails within a second returns before its "start" event reaches the
    driver; that late event once reopened a failed run as ``running`` in the store.
    """

    def __init__(self, *, on_result: OnResult, on_progress: OnProgress | None, on_start: OnStart | None) -> None:
        self.on_result, self.on_progress, self.on_start = on_result, on_progress, on_start
        self.started: set[str] = set()
        self.done: set[str] = set()
        self.attempt: dict[str, Any] = {}

    def _start(self, key: str) -> None:
        if key not in self.started:
            self.started.add(key)
            if self.on_start is not None:
                self.on_start(key)

    def events(self, batch: list[tuple[str, str, int, int, dict]], *, running: set[str]) -> None:
        """Deliver one drained batch of ``(kind, run_key, step, total, metrics)``: the latest progress per run."""
        latest: dict[str, tuple[int, int, dict]] = {}
        for kind, key, step, total, metrics in batch:
            if key in self.done or key not in running:
                continue
            if kind == "start":
                ident = (metrics or {}).get("attempt")
                if key in self.started and ident is not None and self.attempt.get(key) not in (None, ident):
                    self.attempt[key] = ident  # a retry: the run starts again
                    if self.on_start is not None:
                        self.on_start(key)
                else:
                    self._start(key)
                    self.attempt.setdefault(key, ident)
            elif kind == "progress":
                latest[key] = (step, total, metrics)
        if self.on_progress is not None:
            for key, (step, total, metrics) in latest.items():
                self.on_progress(key, step, total, metrics)

    def result(self, key: str, result: dict) -> None:
        """The run's result: its start first if that event has not arrived, then the result, then silence."""
        self._start(key)
        self.done.add(key)
        self.on_result(key, result)


def start_mailbox() -> Any:
    """The progress mailbox of a campaign or study, alive when this returns (a task's first post then leaves at
    once, instead of queueing for an actor still being created and dying with a worker killed a moment later);
    pinned to the driver's own node, so that a worker node lost mid-campaign cannot take it along."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    actor = ProgressActor.options(scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True)).remote()
    ray.get(actor.drain.remote(), timeout=120)
    return actor


def _drain(mailbox: Any) -> list[tuple[str, str, int, int, dict]]:
    """The mailbox's events; none when it is gone (progress is lost, results still arrive through the tasks)."""
    try:
        return ray.get(mailbox.drain.remote(), timeout=30)
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
        return []


def run_specs(
    specs: list[dict],
    *,
    workdir: str | Path,
    tracking_uri: str,
    experiment_name: str,
    run_ids: dict[str, str],
    data_root: str | None = None,
    on_result: OnResult,
    on_progress: OnProgress | None = None,
    on_start: OnStart | None = None,
    max_concurrency: int | None = None,
) -> None:
    """Run every spec as a Ray task (call :func:`ensure_ray` first); ``on_result(run_key, RunResult)`` once each.

    The MLflow store and experiment are initialised here, once, before any task starts. ``max_concurrency``
    caps the tasks in flight (default: a window of ``max(MIN_WINDOW, 4 × CPUs)``; Ray's resource accounting
    decides what actually runs).
    """
    if not specs:
        return
    workdir_s = check_uri(str(workdir))
    uri = absolute_tracking_uri(tracking_uri)
    root = str(Path(data_root).resolve()) if data_root else None
    prepare_tracking(uri, experiment_name)
    mailbox = start_mailbox()
    queue = deque(longest_first(specs))
    in_flight: dict[Any, str] = {}
    relay = RunEventRelay(on_result=on_result, on_progress=on_progress, on_start=on_start)
    limit = max_concurrency or max(MIN_WINDOW, 4 * int(ray.cluster_resources().get("CPU", 1)))

    def submit() -> None:
        while queue and len(in_flight) < limit:
            spec = queue.popleft()
            key = spec["run_key"]
            ref = _remote_run.options(**_task_options(spec)).remote(
                spec, workdir_s, uri, experiment_name, run_ids[key], root, mailbox
            )
            in_flight[ref] = key

    # Ray's driver prints cluster events (e.g. "Task … failed. There are 3 retries remaining") to sys.stdout,
    # which belongs to the command's output (`--json`): while tasks run, they go to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        _drive(submit, in_flight, relay, mailbox, workdir_s)


def finished_tasks(refs: list[Any], timeout: float) -> list[Any]:
    """The tasks of ``refs`` that are done: as soon as one is (at most ``timeout`` seconds), with every other one
    finished by then; a finished run is seen at once, so its CPU gets the next run without waiting for a poll."""
    if not refs:
        return []
    ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
    if ready and len(refs) > 1:
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
    return ready


def cancel_unfinished(refs: list[Any]) -> None:
    """Cancel by force the tasks of ``refs`` that have not finished. A force cancel that crosses a task's own
    completion aborts the driver inside Ray (``Check failed: it != submissible_tasks_.end() Tried to complete task
    that was not pending``, Ray 2.60; ray-project/ray#54846): a finished task is never cancelled, which leaves only
    the milliseconds of a reply in flight, and callers cancel only tasks that have not announced their end."""
    if not refs:
        return
    _, pending = ray.wait(refs, num_returns=len(refs), timeout=0)
    for ref in pending:
        ray.cancel(ref, force=True)


def _drive(
    submit: Callable[[], None], in_flight: dict[Any, str], relay: RunEventRelay, mailbox: Any, workdir: str
) -> None:
    """The driver loop: wait for tasks, relay events and results, top the window up; cancel what is left on exit."""
    try:
        submit()
        while in_flight:
            ready = finished_tasks(list(in_flight), POLL_S)
            relay.events(_drain(mailbox), running=set(in_flight.values()))
            for ref in ready:
                key = in_flight.pop(ref)
                try:
                    result = ray.get(ref)
                except (ray.exceptions.RayError, OSError) as exc:
                    from .execute import failed_result

                    result = failed_result(_death_message(exc), mlflow_run_id=_recorded_run_id(workdir, key))
                relay.result(key, result)
            submit()
    finally:
        cancel_unfinished(list(in_flight))
        ray.kill(mailbox)


def run_specs_inline(
    specs: list[dict],
    *,
    workdir: str | Path,
    tracking_uri: str,
    experiment_name: str,
    run_ids: dict[str, str],
    data_root: str | None = None,
    on_result: OnResult,
    on_progress: OnProgress | None = None,
    on_start: OnStart | None = None,
    max_concurrency: int | None = None,
) -> None:
    """Same contract as :func:`run_specs`, one run after the other in this process (``max_concurrency`` unused)."""
    if not specs:
        return
    from .execute import execute_run

    prepare_tracking(tracking_uri, experiment_name)
    for spec in specs:
        key = spec["run_key"]
        if on_start is not None:
            on_start(key)
        result = execute_run(
            spec,
            workdir=workdir,
            tracking_uri=tracking_uri,
            experiment_name=experiment_name,
            nflab_run_id=run_ids[key],
            data_root=data_root,
            progress=on_progress,
        )
        on_result(key, result)
