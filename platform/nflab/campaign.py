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

from sqlalchemy.exc import SQLAlchemyError

from nflab.db_models import Campaign, Run, too_long
from nflab.pipelines import (
    Pipeline,
    PipelineError,
    campaign_fingerprint,
    check_dataset_available,
    expand,
    load_pipeline,
    pipeline_path,
)
from nflab.settings import Settings, redact
from nflab.store import Store, StoreLookupError, dataset_label, family_label
from nflab.tracking import ensure_experiment
from nflab.workers.environment import code_version_label


@dataclass
class PreparedCampaign:
    """A campaign resolved once: its name, every run's resolved spec (what the worker receives), the pipeline text
    (kept with the campaign), its fingerprint; ``pipeline`` when it was just loaded from YAML."""

    name: str
    specs: list[dict[str, Any]]
    yaml_text: str
    fingerprint: str
    filename: str = "<pipeline>"
    pipeline: Pipeline | None = None


@dataclass
class CampaignOutcome:
    campaign_id: str
    name: str
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [k for k, r in self.results.items() if r.get("status") != "finished"]


def prepare(
    path: str | Path, overrides: Sequence[str], settings: Settings, *, confirmed: bool = False
) -> PreparedCampaign:
    """Validate everything before anything is written: the size of the campaign (at most ``settings.max_runs``
    runs unless ``confirmed``), the YAML, every expanded run, the data files, and that every value fits its column
    of the store. The campaign is expanded once, here."""
    pipeline = load_pipeline(path, overrides, max_runs=None if confirmed else settings.max_runs)
    check_dataset_available(pipeline, str(settings.data_root))
    specs = [spec.model_dump(mode="json") for spec in expand(pipeline)]
    filename = pipeline_path(path).name
    _check_fits_store(filename, pipeline.name, specs)
    text = pipeline._source + "".join(f"\n# --set {o}" for o in overrides)
    return PreparedCampaign(pipeline.name, specs, text, campaign_fingerprint(pipeline), filename, pipeline)


def stored_campaign(store: Store, campaign_id: str) -> PreparedCampaign:
    """A campaign as ``submit`` stored it: its resolved run specs, read back from the store (the driver of a submitted
    campaign runs exactly these; it never reads or resolves the YAML again)."""
    camp = store.get_campaign(campaign_id)
    specs = [
        {
            "campaign": camp["name"],
            "run_key": r["run_key"],
            "config_hash": r["config_hash"],
            "seed": r["seed"],
            "repeat": r["repeat"],
            "overrides": {},
            "config": r["config"],
        }
        for r in store.list_runs(camp["id"])
    ]
    return PreparedCampaign(camp["name"], specs, camp["pipeline_yaml"], camp["fingerprint"], camp["name"])


def existing_statuses(prepared: PreparedCampaign, settings: Settings) -> tuple[str | None, dict[str, str]]:
    """The campaign a ``nflab run`` of this pipeline would resume (its id, or None) and its runs' statuses — read
    without writing anything: a SQLite store that does not exist is not created, nothing is migrated."""
    from sqlalchemy.exc import SQLAlchemyError

    from nflab.settings import sqlite_path

    path = sqlite_path(settings.db_url)
    if path is not None and not path.exists():
        return None, {}
    store = Store(settings.db_url, auto_migrate=False)
    try:
        campaign_id = store.find_campaign_by_fingerprint(prepared.fingerprint)
        if campaign_id is None:
            return None, {}
        return campaign_id, {r["run_key"]: r["status"] for r in store.list_runs(campaign_id)}
    except SQLAlchemyError:
        return None, {}  # a store of another version or none reachable: nothing is known to be finished
    finally:
        store.close()


def plan_campaign(prepared: PreparedCampaign, settings: Settings) -> dict[str, Any]:
    """What ``nflab run`` would do, computed without writing anything: every run with its config hash, the options
    that vary between runs, its resources and budget, and its status in the campaign a run would resume."""
    campaign_id, status = existing_statuses(prepared, settings)
    runs = [
        {
            "run_key": s["run_key"],
            "config_hash": s["config_hash"],
            "seed": s["seed"],
            "varying": s["overrides"],
            "cpu": s["config"]["resources"]["cpu"],
            "gpu": s["config"]["resources"]["gpu"],
            "steps": s["config"]["train"]["steps"],
            "status": status.get(s["run_key"], "new"),
        }
        for s in prepared.specs
    ]
    return {
        "pipeline": prepared.name,
        "runs": len(runs),
        "configurations": len({r["config_hash"] for r in runs}),
        "varying": sorted({k for r in runs for k in r["varying"]}),
        "steps": sum(r["steps"] for r in runs),
        "cpu": max((r["cpu"] for r in runs), default=0),
        "gpu": max((r["gpu"] for r in runs), default=0),
        "resumes": campaign_id,
        "finished": sum(r["status"] == "finished" for r in runs),
        "plan": runs,
    }


def _check_fits_store(filename: str, name: str, specs: list[dict[str, Any]]) -> None:
    checks = [("name", Campaign, {"name": name})]
    for spec in specs:
        cfg = spec["config"]
        values = {"run_key": spec["run_key"], "dataset": dataset_label(cfg), "family": family_label(cfg)}
        checks.append((spec["run_key"][:40], Run, values))
    for where, model, values in checks:
        over = too_long(model, values)
        if over is not None:
            column, length = over
            value = values[column]
            path = "name" if column == "name" else f"run {where}… {column}"
            raise PipelineError(
                filename, path, f"{value[:40]!r}… has {len(value):,} characters; the store allows at most {length}"
            )


def check_resources(prepared: PreparedCampaign, nodes: Sequence[dict[str, float]], where: str = "Ray") -> None:
    """Refuse a run that no node can host (it would wait forever): its ``resources.cpu``/``gpu`` must fit one node."""
    if not nodes:
        raise PipelineError(where, "resources", "no alive node to run on")
    best_cpu = max(n["cpu"] for n in nodes)
    best_gpu = max(n["gpu"] for n in nodes)
    for spec in prepared.specs:
        res = spec["config"]["resources"]
        if not any(res["cpu"] <= n["cpu"] and res["gpu"] <= n["gpu"] for n in nodes):
            field = "gpu" if res["gpu"] > best_gpu else "cpu"
            raise PipelineError(
                prepared.filename,
                f"resources.{field}",
                f"{res[field]:g} is more than any node of {where} offers "
                f"(largest: {best_cpu:g} CPUs, {best_gpu:g} GPUs; a run must fit on one node)",
            )


def local_capacity() -> list[dict[str, float]]:
    """This machine as one node: its CPUs and CUDA GPUs (what a local Ray would offer)."""
    import os

    gpus = 0
    try:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return [{"cpu": float(os.cpu_count() or 1), "gpu": float(gpus)}]


def open_campaign(store: Store, prepared: PreparedCampaign, settings: Settings, *, fresh: bool = False) -> str:
    """The campaign id: the latest one with the same fingerprint (resume) or a new one."""
    if not fresh:
        existing = store.find_campaign_by_fingerprint(prepared.fingerprint)
        if existing is not None:
            return existing
    campaign_id = store.create_campaign(prepared.name, prepared.fingerprint, prepared.yaml_text)
    experiment_id = ensure_experiment(settings, experiment_name(prepared.name, campaign_id))
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

    outcome = CampaignOutcome(campaign_id, prepared.name)
    try:
        store.get_campaign(campaign_id)
    except StoreLookupError:
        raise StoreLookupError(
            f"campaign: {campaign_id!r} is not in the store at {redact(store.url)}; allowed: a campaign of this store "
            "(a submitted job's environment must set NFLAB_DB_URL to the submitter's store)"
        ) from None
    run_ids = store.add_runs(campaign_id, prepared.specs, code_version=code_version_label())
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
        try:
            store.record_result(run_ids[run_key], result)
        except SQLAlchemyError as exc:  # the run is over either way: never leave it `running`
            reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:400]
            result = {**result, "status": "failed", "error": f"could not record the result: {reason}"}
            store.set_run_status(run_ids[run_key], "failed", result["error"])
        outcome.results[run_key] = result
        if on_result:
            on_result(run_key, result)

    if todo:
        executor = runs
        if executor is None:
            ensure_ray(address or settings.ray_address)
            executor = run_specs
        check_storage(settings)
        try:
            executor(
                todo,
                workdir=campaign_storage(settings, campaign_id),
                tracking_uri=settings.mlflow_tracking_uri,
                experiment_name=experiment_name(prepared.name, campaign_id),
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


def campaign_storage(settings: Settings, campaign_id: str) -> str:
    """The campaign's folder in run storage (``NFLAB_STORAGE``): a path or a URI."""
    from nflab.workers.storage import join

    return join(settings.storage, campaign_id)


def check_storage(settings: Settings) -> None:
    """Refuse run storage that cannot be listed (wrong endpoint, bucket or credentials) before any run starts."""
    from nflab.settings import SettingsError
    from nflab.workers.storage import StorageError, probe

    try:
        probe(settings.storage)
    except StorageError as exc:
        raise SettingsError.from_message(str(exc)) from None


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
