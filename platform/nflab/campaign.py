"""The campaign driver: pipeline → validated runs → store rows → Ray tasks → recorded results.

The driver is the single writer of nflab's SQL store (SQLite allows one writer at a time); workers write
only to MLflow and their run folder. Re-running the same pipeline resumes its campaign: finished runs are
skipped, unfinished ones restart from their last checkpoint (``fresh=True`` starts a new campaign).
"""

from __future__ import annotations

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
from nflab.settings import Settings
from nflab.store import Store
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
    store.set_campaign_status(campaign_id, "failed" if outcome.failed else "finished")
    return outcome


def driver_host() -> str:
    return socket.gethostname()
