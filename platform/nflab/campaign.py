"""The campaign driver: pipeline → validated runs → store rows → Ray tasks → recorded results.

The driver is the single writer of nflab's SQL store (SQLite allows one writer at a time); workers write
only to MLflow and their run folder. Re-running the same pipeline resumes its campaign: finished runs are
skipped, unfinished ones restart from their last checkpoint (``fresh=True`` starts a new campaign).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nflab.pipelines import (
    Pipeline,
    campaign_fingerprint,
    check_dataset_available,
    expand,
    load_pipeline,
    pipeline_path,
)
from nflab.settings import Settings, redact
from nflab.store import Store, StoreLookupError
from nflab.tracking import ensure_experiment


@dataclass
class PreparedCampaign:
    pipeline: Pipeline
    specs: list[dict[str, Any]]
    yaml_text: str
    fingerprint: str


@dataclass
class CampaignOutcome:
    campaign_id: str
    name: str
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [k for k, r in self.results.items() if r.get("status") != "finished"]


def prepare(path: str | Path, overrides: Sequence[str], settings: Settings) -> PreparedCampaign:
    """Validate everything before anything is written: the YAML, every expanded run, the data files."""
    pipeline = load_pipeline(path, overrides)
    check_dataset_available(pipeline, str(settings.data_root))
    specs = [spec.model_dump(mode="json") for spec in expand(pipeline)]
    text = pipeline_path(path).read_text()
    if overrides:
        text += "".join(f"\n# --set {o}" for o in overrides)
    return PreparedCampaign(pipeline, specs, text, campaign_fingerprint(pipeline))


def open_campaign(store: Store, prepared: PreparedCampaign, settings: Settings, *, fresh: bool = False) -> str:
    """The campaign id: the latest one with the same fingerprint (resume) or a new one."""
    if not fresh:
        existing = store.find_campaign_by_fingerprint(prepared.fingerprint)
        if existing is not None:
            return existing
    campaign_id = store.create_campaign(prepared.pipeline.name, prepared.fingerprint, prepared.yaml_text)
    experiment_id = ensure_experiment(settings, experiment_name(prepared.pipeline.name, campaign_id))
    store.set_mlflow_experiment_id(campaign_id, experiment_id)
    return campaign_id


def experiment_name(pipeline_name: str, campaign_id: str) -> str:
    return f"nflab/{pipeline_name}/{campaign_id[:8]}"


def run_campaign(
    prepared: PreparedCampaign,
    settings: Settings,
    *,
    store: Store,
    campaign_id: str,
    address: str | None = None,
    on_progress: Callable[[str, int, int, dict[str, Any]], None] | None = None,
    on_result: Callable[[str, dict[str, Any]], None] | None = None,
    on_start: Callable[[str], None] | None = None,
    runs: Callable[..., None] | None = None,
) -> CampaignOutcome:
    """Run every unfinished run of the campaign on Ray and record each result as it arrives."""
    from nflab.workers import ensure_ray, run_specs

    outcome = CampaignOutcome(campaign_id, prepared.pipeline.name)
    try:
        store.get_campaign(campaign_id)
    except StoreLookupError:
        raise StoreLookupError(
            f"campaign: {campaign_id!r} is not in the store at {redact(store.url)}; allowed: a campaign of this store "
            "(a submitted job's environment must set NFLAB_DB_URL to the submitter's store)"
        ) from None
    run_ids = store.add_runs(campaign_id, prepared.specs)
    status = {r["run_key"]: r["status"] for r in store.list_runs(campaign_id)}
    todo = [s for s in prepared.specs if status.get(s["run_key"]) != "finished"]
    outcome.skipped = [s["run_key"] for s in prepared.specs if status.get(s["run_key"]) == "finished"]
    store.set_campaign_status(campaign_id, "running")
    attempts: dict[str, int] = {}

    def started(run_key: str) -> None:
        attempts[run_key] = attempts.get(run_key, 0) + 1
        store.mark_running(run_ids[run_key], attempts[run_key])
        if on_start:
            on_start(run_key)

    def finished(run_key: str, result: dict[str, Any]) -> None:
        store.record_result(run_ids[run_key], result)
        outcome.results[run_key] = result
        if on_result:
            on_result(run_key, result)

    if todo:
        executor = runs
        if executor is None:
            ensure_ray(address or settings.ray_address)
            executor = run_specs
        try:
            executor(
                todo,
                workdir=str(settings.home / "runs" / campaign_id),
                tracking_uri=settings.mlflow_tracking_uri,
                experiment_name=experiment_name(prepared.pipeline.name, campaign_id),
                run_ids=run_ids,
                data_root=str(settings.data_root),
                on_result=finished,
                on_progress=on_progress,
                on_start=started,
            )
        except (KeyboardInterrupt, SystemExit) as exc:  # Ctrl-C, or SIGTERM (Ray's handler exits) from a stop
            how = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"stopped (exit {exc.code})"
            with contextlib.suppress(Exception):  # the interrupt goes on; `nflab cancel` can still end the campaign
                end_campaign(store, settings, campaign_id, "cancelled", f"{how}; re-run the pipeline to resume")
            raise
    store.set_campaign_status(campaign_id, "failed" if outcome.failed else "finished")
    return outcome


def end_campaign(store: Store, settings: Settings, campaign_id: str, status: str, reason: str) -> int:
    """End a campaign that will not go on (``cancelled`` or ``failed``) in the store and in MLflow.

    Its pending and running runs take ``status``; their MLflow runs still RUNNING become KILLED (cancelled) or
    FAILED, since the processes that would have ended them are gone. Idempotent (the driver may have done it
    already, on its way out); returns how many of the campaign's runs are now in ``status``.
    """
    from nflab.workers.tracking import terminate_runs

    store.close_campaign(campaign_id, status, reason)
    camp = store.get_campaign(campaign_id)
    run_ids = [r["id"] for r in store.list_runs(camp["id"], status=status)]
    if camp.get("mlflow_experiment_id"):
        mlflow_status = "KILLED" if status == "cancelled" else "FAILED"
        terminate_runs(settings.mlflow_tracking_uri, camp["mlflow_experiment_id"], run_ids, mlflow_status)
    return len(run_ids)


def driver_host() -> str:
    return socket.gethostname()
