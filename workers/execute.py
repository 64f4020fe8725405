"""``execute_run``: one run from spec to RunResult; run-level failures become ``status="failed"``, never raises.

Layout of a run folder ``<workdir>/<run_key>/``: ``run.json`` (MLflow run id), ``config.json`` (the spec),
``pid`` (the process running it), ``checkpoints/``, the PNG figures, and ``analysis/`` when the spec has an
``analysis`` section (``nflab.workers.analyses``): it runs after training, or instead of it (``fit1d``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import checkpoint as ckpt
from .analyses import AnalysisOutcome, analysis_of
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
        "artifacts": [],
        "wall_s": wall_s,
    }


def result_rows(state: TrainState) -> list[dict[str, Any]]:
    """RunResult rows: {best, final} × {nats, bpd (images)} on the test split."""
    rows = []
    for kind, ev in (("best", state.best), ("final", state.last_eval)):
        if ev is None:
            continue
        for metric in ("nats", "bpd"):
            if ev.get(metric) is not None:
                rows.append(
                    {
                        "split": "test",
                        "metric": metric,
                        "value": float(ev[metric]),
                        "budget": ev["budget"],
                        "step": int(ev["step"]),
                        "kind": kind,
                    }
                )
    return rows


def _checkpoint_rows(run_dir: Path) -> list[dict[str, Any]]:
    folder = run_dir / "checkpoints"
    files = ckpt.step_checkpoints(folder)
    best = ckpt.best_checkpoint(folder)
    return [c.describe() for c in [*files, *([best] if best else [])]]


def _summarise(tracker: Tracker, state: TrainState, run_dir: Path) -> None:
    """Explicit best_/final_ metrics, certificates, and the artifacts (config, figures, final checkpoint)."""
    summary: dict[str, Any] = {}
    for row in result_rows(state):
        summary[f"{row['kind']}_{row['metric']}"] = row["value"]
    summary.update({f"cert_{k}": v for k, v in state.certificates.items() if isinstance(v, float)})
    tracker.log_metrics(summary, state.step)
    tracker.log_artifact(run_dir / "config.json")
    for path in state.plots:
        tracker.log_artifact(path)
    final = ckpt.step_checkpoints(run_dir / "checkpoints")
    if final:
        tracker.log_artifact(final[-1].path, "checkpoints")


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
) -> dict[str, Any]:
    """Train, evaluate and record one run; resumes from the newest checkpoint in its folder if there is one.

    ``progress(run_key, step, total_steps, metrics)`` is called every ``train.log_every`` steps.
    ``stop_after_step`` (or env ``NFLAB_TEST_STOP_AFTER_STEP``) is a test hook that simulates a crash.
    """
    start = time.monotonic()
    run_key = str(spec.get("run_key", "run"))
    run_dir = Path(workdir).resolve() / run_key
    state = TrainState()
    outcome = AnalysisOutcome()
    tracker: Tracker | None = None
    log: RunLog | None = None
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        log = RunLog(run_dir)
        log.write(f"start run {run_key} (nflab run {nflab_run_id}, pid {os.getpid()}, seed {spec.get('seed')})")
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
        analysis = analysis_of(spec)
        if analysis is None or not analysis.replaces_training:
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
        if analysis is not None:
            log.write(f"analysis {analysis.kind}")
            outcome = analysis.run(spec, run_dir, tracker, state, data_root=data_root, progress=log.wrap(progress))
        tracker.finish("FINISHED")
        status, error = "finished", None
        log.write(f"finished after {state.step} steps (resumed from {state.resumed_from})")
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
    return {
        "status": status,
        "error": error,
        "steps": state.step,
        "resumed_from": state.resumed_from,
        "mlflow_run_id": None if tracker is None else tracker.run_id,
        "results": [*result_rows(state), *outcome.results] if status == "finished" else [],
        "checkpoints": _checkpoint_rows(run_dir) if run_dir.is_dir() else [],
        "certificates": state.certificates,
        "artifacts": [p.resolve().as_uri() for p in [*state.plots, *outcome.artifacts]],
        "wall_s": round(time.monotonic() - start, 3),
    }
