"""``execute_run``: one run from spec to RunResult; run-level failures become ``status="failed"``, never raises.

``workdir`` is the campaign's folder in run storage (a path, or a URI: ``nflab.workers.runfiles``). Layout of a
run folder ``<workdir>/<run_key>/``: ``run.json`` (MLflow run id), ``config.json`` (the spec),
``pid`` (the process running it), ``checkpoints/``, the PNG figures, and ``analysis/`` when the spec has an
``analysis`` section (``nflab.workers.analyses``, after training); a fit1d run (config ``kind: fit1d``) runs its
regression instead of density training. A run whose progress callback raises ``StopRequested`` (a pruned trial)
ends ``status="stopped"``, its MLflow run KILLED.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import checkpoint as ckpt
from .analyses import RUN_KINDS, AnalysisOutcome, analysis_of
from .progress import StopRequested
from .runfiles import RunFiles
from .runlog import RunLog
from .tracking import Tracker
from .train import RunFailure, TrainState, train_run


def one_line(exc: BaseException) -> str:
    """A one-line error: the message itself for run failures, ``Type: message`` otherwise."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, RunFailure):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def failed_result(error: str, *, wall_s: float = 0.0, mlflow_run_id: str | None = None) -> dict[str, Any]:
    """A RunResult for a run that failed before (or outside of) training."""
    return {
        "status": "failed",
        "error": error,
        "steps": 0,
        "resumed_from": None,
        "mlflow_run_id": mlflow_run_id,
        "results": [],
        "checkpoints": [],
        "certificates": {},
        "certificates_step": None,
        "n_params": None,
        "preset": None,
        "data_digest": None,
        "artifacts": [],
        "wall_s": wall_s,
    }


METRICS = ("nats", "bpd")
CERTIFICATE_METRICS = ("inversion_error", "logdet_gap", "jacobian_condition", "jacobian_norm")


def _row(ev: dict[str, Any], metric: str, *, kind: str, selection: str, step: int) -> dict[str, Any]:
    return {
        "split": ev["split"],
        "metric": metric,
        "value": float(ev[metric]),
        "budget": ev["budget"],
        "step": int(step),
        "kind": kind,
        "selection": selection,
        "quantity": ev.get("quantity"),
        "n_samples": ev.get("n"),
    }


def result_rows(state: TrainState) -> list[dict[str, Any]]:
    """RunResult rows (docs/contracts.md), every one saying which rule chose its checkpoint (``selection``):

    - ``best`` / ``val-best``: the test (and validation) metric of the checkpoint with the best validation metric;
    - ``final`` / ``final``: both splits on the final weights;
    - ``mean`` / ``last-N-mean``: the mean test metric over the last N evaluations (when ``eval.average_last``);
    - the certificates of the selected checkpoint as metrics of their own (``best`` / ``val-best``, same step).
    """
    rows: list[dict[str, Any]] = []
    picks = []
    if state.best is not None and state.best.get("test") is not None:
        picks.append(("best", "val-best", state.best))
    if state.final is not None:
        picks.append(("final", "final", state.final))
    for kind, selection, chosen in picks:
        for split in ("test", "validation"):
            ev = chosen[split]
            rows += [
                _row(ev, m, kind=kind, selection=selection, step=chosen["step"])
                for m in METRICS
                if ev.get(m) is not None
            ]
    if state.tail:
        last = state.tail[-1]
        for metric in METRICS:
            if last.get(metric) is not None:
                mean = {**last, metric: sum(ev[metric] for ev in state.tail) / len(state.tail)}
                rows.append(
                    _row(mean, metric, kind="mean", selection=f"last-{len(state.tail)}-mean", step=last["step"])
                )
    if state.certificates_step is not None:
        for name in CERTIFICATE_METRICS:
            value = state.certificates.get(name)
            if isinstance(value, float) and math.isfinite(value):
                rows.append(
                    {
                        "split": "test",
                        "metric": name,
                        "value": value,
                        "budget": "probe-" + str(state.certificates.get("probe_size")),
                        "step": state.certificates_step,
                        "kind": "best",
                        "selection": "val-best",
                        "quantity": "exact",
                        "n_samples": state.certificates.get("probe_size"),
                    }
                )
    return rows


def _checkpoint_rows(files: RunFiles) -> list[dict[str, Any]]:
    folder = files.run_dir / "checkpoints"
    found = ckpt.step_checkpoints(folder)
    best = ckpt.best_checkpoint(folder)
    return [{**c.describe(), "uri": files.checkpoint_uri(c.path)} for c in [*found, *([best] if best else [])]]


def _summarise(tracker: Tracker, state: TrainState, run_dir: Path) -> None:
    """Explicit best_/final_ metrics, certificates, and the artifacts (config, figures, final checkpoint)."""
    summary: dict[str, Any] = {}
    for row in result_rows(state):
        if row["metric"] in METRICS:
            prefix = row["kind"] if row["split"] == "test" else f"{row['kind']}_val"
            summary[f"{prefix}_{row['metric']}"] = row["value"]
    summary.update({f"cert_{k}": v for k, v in state.certificates.items() if isinstance(v, float)})
    tracker.log_metrics(summary, state.step)
    tracker.log_artifact(run_dir / "config.json")
    for path in state.plots:
        tracker.log_artifact(path)
    final = ckpt.step_checkpoints(run_dir / "checkpoints")
    if final:
        tracker.log_artifact(final[-1].path, "checkpoints")


def _gpu_note(spec: Mapping[str, Any]) -> str | None:
    """For a run that asked for a GPU: which devices Ray gave it, and whether CUDA is really there."""
    resources = (spec.get("config") or {}).get("resources") or {}
    gpu = float(resources.get("gpu") or 0)
    if gpu <= 0:
        return None
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
    if torch.cuda.is_available():
        return f"resources.gpu={gpu:g}: CUDA_VISIBLE_DEVICES={visible}, {torch.cuda.device_count()} CUDA device(s)"
    return f"resources.gpu={gpu:g}: CUDA_VISIBLE_DEVICES={visible}, but CUDA is not available here: training on CPU"


def execute_run(
    spec: Mapping[str, Any],
    *,
    workdir: str | Path,
    tracking_uri: str,
    experiment_name: str,
    nflab_run_id: str,
    data_root: str | None = None,
    progress: Callable[[str, int, int, dict], None] | None = None,
    stop_after_step: int | None = None,
    where: str | None = None,
) -> dict[str, Any]:
    """Train, evaluate and record one run; resumes from the newest checkpoint in its folder if there is one.

    ``progress(run_key, step, total_steps, metrics)`` is called every ``train.log_every`` steps; ``where`` (the
    node, from the Ray task) goes into the run's log.
    ``stop_after_step`` (or env ``NFLAB_TEST_STOP_AFTER_STEP``) is a test hook that simulates a crash.
    """
    start = time.monotonic()
    run_key = str(spec.get("run_key", "run"))
    files = RunFiles(workdir, run_key)
    run_dir = files.run_dir
    state = TrainState()
    outcome = AnalysisOutcome()
    tracker: Tracker | None = None
    log: RunLog | None = None
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fetched = files.fetch()  # remote storage: the newest checkpoint and run.json from any earlier attempt
        log = RunLog(run_dir)
        at = f", {where}" if where else ""
        log.write(f"start run {run_key} (nflab run {nflab_run_id}, pid {os.getpid()}, seed {spec.get('seed')}{at})")
        gpu_note = _gpu_note(spec)
        if gpu_note:
            log.write(gpu_note)
        if fetched is not None:
            log.write(f"fetched the checkpoint of step {fetched} from run storage")
        (run_dir / "pid").write_text(str(os.getpid()))
        (run_dir / "config.json").write_text(json.dumps(dict(spec), indent=2, sort_keys=True, default=str))
        tracker = Tracker.open(
            tracking_uri=tracking_uri,
            experiment_name=experiment_name,
            spec=spec,
            nflab_run_id=nflab_run_id,
            run_dir=run_dir,
        )
        tracker.log_params({**dict(spec.get("config") or {}), "seed": spec.get("seed"), "repeat": spec.get("repeat")})
        regression = RUN_KINDS.get(str(spec["config"].get("kind")))  # a run kind of its own instead of a density
        analysis = None if regression is not None else analysis_of(spec)
        if regression is None:
            with ckpt.mirrored(run_dir / "checkpoints", files):
                train_run(
                    spec,
                    run_dir,
                    tracker,
                    state,
                    data_root=data_root,
                    progress=log.wrap(progress),
                    stop_after_step=stop_after_step,
                )
        _summarise(tracker, state, run_dir)
        if regression is not None:
            log.write(f"{spec['config']['kind']} regression")
            outcome = regression(spec, run_dir, tracker, state, progress=log.wrap(progress))
        elif analysis is not None:
            log.write(f"analysis {analysis.kind}")
            outcome = analysis.run(spec, run_dir, tracker, state, data_root=data_root, progress=log.wrap(progress))
        tracker.finish("FINISHED")
        status, error = "finished", None
        log.write(f"finished after {state.step} steps (resumed from {state.resumed_from})")
    except StopRequested as exc:  # the driver pruned it: not a failure, and the worker stays for the next run
        status, error = "stopped", str(exc)
        if log is not None:
            log.write(error)
        if tracker is not None:
            with contextlib.suppress(Exception):
                tracker.finish("KILLED")
    except Exception as exc:  # every run-level failure is reported, not raised
        status, error = "failed", one_line(exc)
        if log is not None:
            log.failure(error, exc)
        if tracker is not None:
            try:
                tracker.set_tags({"nflab.error": error})
                tracker.finish("FAILED")
            except Exception:  # the store itself may be what failed
                pass
    artifacts: list[str] = []
    if log is not None:
        try:
            files.publish([p for p in (run_dir / "config.json",) if p.is_file()])
            artifacts = files.publish([*state.plots, *outcome.artifacts])
        except Exception as exc:  # storage gone at the very end: the run's numbers stand, its files are lost
            log.write(f"could not publish the run's files to run storage: {one_line(exc)}")
    checkpoints = _checkpoint_rows(files) if run_dir.is_dir() else []
    if status == "finished":
        files.drop_scratch()
    return {
        "status": status,
        "error": error,
        "steps": state.step,
        "resumed_from": state.resumed_from,
        "mlflow_run_id": None if tracker is None else tracker.run_id,
        "results": [*result_rows(state), *outcome.results] if status == "finished" else [],
        "checkpoints": checkpoints,
        "certificates": state.certificates,
        "certificates_step": state.certificates_step,
        "n_params": state.n_params,
        "preset": state.preset,
        "data_digest": state.data_digest or None,
        "artifacts": artifacts,
        "wall_s": round(time.monotonic() - start, 3),
    }
