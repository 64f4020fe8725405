"""nflab's SQL store: campaigns, runs, results, checkpoints, schedules and repro checks.

``Store(url)`` works on SQLite (embedded default) and PostgreSQL (``postgresql+psycopg://``, team mode) and
applies the Alembic migrations on first use. Every method opens its own short session, so one ``Store`` may be
shared by threads; what comes out is plain dicts (timestamps as timezone-aware UTC ``datetime``), never ORM
objects.

SQLite: WAL journal (readers never block the writer), ``busy_timeout`` 30 s, foreign keys on, and writes start
with ``BEGIN IMMEDIATE`` so concurrent writers queue instead of failing. SQLite still has a single writer at
a time: in the embedded setup the campaign driver is the one process that writes; the CLI only reads (or
writes small things such as a cancel, which simply waits its turn).
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, func, insert, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nflab import migrate
from nflab.db_models import (
    RESULT_QUANTITIES,
    RUN_STATUSES,
    Base,
    Campaign,
    Checkpoint,
    ReproCheck,
    Result,
    Run,
    Schedule,
    Study,
    legacy_quantity,
    utcnow,
)
from nflab.settings import sqlite_path

ACTIVE = ("pending", "running")
#: the fingerprint of every campaign a repro check starts begins with this: their runs re-run pinned ones
REPRO_FINGERPRINT_PREFIX = "repro:"
_REPRO_CAMPAIGNS = select(Campaign.id).where(Campaign.fingerprint.startswith(REPRO_FINGERPRINT_PREFIX))
_CHUNK = 500


class StoreLookupError(LookupError):
    """No row matches a reference (id, id prefix, run key or name)."""


class AmbiguousReferenceError(StoreLookupError):
    """A prefix matches more than one row."""


def _aware(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _row(obj: Base) -> dict[str, Any]:
    return {attr.key: _aware(getattr(obj, attr.key)) for attr in sa_inspect(type(obj)).column_attrs}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event below emits BEGIN itself
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "busy_timeout=30000", "foreign_keys=ON", "synchronous=NORMAL"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("nflab_write") else "BEGIN")


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets its folder created and WAL / busy timeout / foreign keys set."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    path = sqlite_path(url)
    if path is None:
        raise ValueError("nflab's store needs a SQLite file (sqlite:///path/to/nflab.db), not an in-memory database")
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


class Store:
    """The nflab SQL store at ``url`` (migrated to the newest schema on first use unless ``auto_migrate=False``)."""

    def __init__(self, url: str, *, auto_migrate: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._writer = self.engine.execution_options(nflab_write=True)
        self._auto_migrate = auto_migrate
        self._ready = False
        self._lock = threading.Lock()

    # -- plumbing -------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ensure_schema(self) -> None:
        """Upgrade the database to the newest revision if it is not there yet (once per Store)."""
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            if self._auto_migrate:
                target = migrate.head()
                if migrate.current(self.url) != target:
                    try:
                        migrate.upgrade(self.url, target)
                    except Exception:
                        if migrate.current(self.url) != target:  # another process may have just done it
                            raise
            self._ready = True

    @contextmanager
    def _read(self) -> Iterator[Session]:
        self.ensure_schema()
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def _write(self) -> Iterator[Session]:
        self.ensure_schema()
        with Session(self._writer, expire_on_commit=False) as session, session.begin():
            yield session

    def _upsert(self, session: Session, model: type[Base], rows: list[dict], keys: list[str], set_: list[str]) -> None:
        """Insert ``rows``; a row whose ``keys`` exist updates the ``set_`` columns (set_=[] → leave it)."""
        if not rows:
            return
        dialect = session.get_bind().dialect.name
        if dialect in ("sqlite", "postgresql"):
            ins = (sqlite if dialect == "sqlite" else postgresql).insert(model)
            for start in range(0, len(rows), _CHUNK):
                stmt = ins.values(rows[start : start + _CHUNK])
                if set_:
                    stmt = stmt.on_conflict_do_update(
                        index_elements=keys, set_={c: getattr(stmt.excluded, c) for c in set_}
                    )
                else:
                    stmt = stmt.on_conflict_do_nothing(index_elements=keys)
                session.execute(stmt)
            return
        for row in rows:  # portable fallback: look up, then update or insert
            where = [getattr(model, k) == row[k] for k in keys]
            found = session.scalars(select(model).where(*where)).first()
            if found is None:
                session.execute(insert(model).values(row))
            else:
                for col in set_:
                    setattr(found, col, row[col])

    # -- campaigns ------------------------------------------------------------------------------------------

    def create_campaign(
        self,
        name: str,
        fingerprint: str,
        yaml_text: str,
        mlflow_experiment_id: str | None = None,
        *,
        status: str = "pending",
    ) -> str:
        """Record a new campaign and return its id (a uuid4 string)."""
        campaign_id = str(uuid.uuid4())
        with self._write() as s:
            s.add(
                Campaign(
                    id=campaign_id,
                    name=name,
                    fingerprint=fingerprint,
                    pipeline_yaml=yaml_text,
                    created_at=utcnow(),
                    status=status,
                    mlflow_experiment_id=None if mlflow_experiment_id is None else str(mlflow_experiment_id),
                )
            )
        return campaign_id

    def find_campaign_by_fingerprint(self, fingerprint: str) -> str | None:
        """The id of the newest campaign with this pipeline fingerprint, or None."""
        with self._read() as s:
            stmt = select(Campaign.id).where(Campaign.fingerprint == fingerprint)
            return s.scalars(stmt.order_by(Campaign.created_at.desc()).limit(1)).first()

    def _resolve_campaign(self, s: Session, ref: str) -> Campaign:
        found = s.get(Campaign, ref)
        if found is not None:
            return found
        matches = list(s.scalars(select(Campaign).where(Campaign.id.startswith(ref, autoescape=True)).limit(5)))
        if not ref or not matches:
            raise StoreLookupError(f"campaign: {ref!r} is no campaign id or id prefix (see `nflab status`)")
        if len(matches) > 1:
            ids = ", ".join(m.id for m in matches)
            raise AmbiguousReferenceError(f"campaign: {ref!r} matches several campaigns: {ids}; give more of the id")
        return matches[0]

    def _counts(self, s: Session, campaign_ids: list[str]) -> dict[str, dict[str, int]]:
        out = {cid: dict.fromkeys(RUN_STATUSES, 0) for cid in campaign_ids}
        if not campaign_ids:
            return out
        stmt = (
            select(Run.campaign_id, Run.status, func.count())
            .where(Run.campaign_id.in_(campaign_ids))
            .group_by(Run.campaign_id, Run.status)
        )
        for cid, status, n in s.execute(stmt):
            out[cid][status] = n
        for counts in out.values():
            counts["total"] = sum(counts[st] for st in RUN_STATUSES)
        return out

    def get_campaign(self, ref: str) -> dict[str, Any]:
        """A campaign by id or unique id prefix, with its run counts by status under ``"counts"``."""
        with self._read() as s:
            campaign = self._resolve_campaign(s, ref)
            out = _row(campaign)
            out["counts"] = self._counts(s, [campaign.id])[campaign.id]
            return out

    def list_campaigns(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest ``limit`` campaigns (newest first), each with ``"counts"``; the YAML text is left out."""
        with self._read() as s:
            campaigns = list(s.scalars(select(Campaign).order_by(Campaign.created_at.desc()).limit(limit)))
            counts = self._counts(s, [c.id for c in campaigns])
            rows = []
            for c in campaigns:
                row = _row(c)
                row.pop("pipeline_yaml")
                row["counts"] = counts[c.id]
                rows.append(row)
            return rows

    def campaign_summary(self, campaign_id: str) -> dict[str, int]:
        """Run counts by status (every status present, zeros included) plus ``"total"``."""
        with self._read() as s:
            campaign = self._resolve_campaign(s, campaign_id)
            return self._counts(s, [campaign.id])[campaign.id]

    def _set_campaign(self, ref: str, **values: Any) -> None:
        with self._write() as s:
            campaign = self._resolve_campaign(s, ref)
            for key, value in values.items():
                setattr(campaign, key, value)

    def set_campaign_status(self, campaign_id: str, status: str) -> None:
        """Set a campaign's status (pending, running, finished, failed, cancelled); a campaign that is running again
        or finished forgets the reason of an earlier failure."""
        if status in ("failed", "cancelled"):
            self._set_campaign(campaign_id, status=status)
        else:
            self._set_campaign(campaign_id, status=status, error=None)

    def set_submission_id(self, campaign_id: str, submission_id: str | None) -> None:
        """Remember the Ray Jobs submission id that runs this campaign."""
        self._set_campaign(campaign_id, submission_id=submission_id)

    def set_mlflow_experiment_id(self, campaign_id: str, experiment_id: str | None) -> None:
        """Remember the campaign's MLflow experiment."""
        self._set_campaign(campaign_id, mlflow_experiment_id=None if experiment_id is None else str(experiment_id))

    def cancel_campaign(self, campaign_id: str) -> int:
        """Mark the campaign cancelled and its pending/running runs cancelled; return how many runs changed."""
        with self._write() as s:
            campaign = self._resolve_campaign(s, campaign_id)
            campaign.status = "cancelled"
            stmt = (
                update(Run)
                .where(Run.campaign_id == campaign.id, Run.status.in_(ACTIVE))
                .values(status="cancelled", finished_at=utcnow())
            )
            return s.execute(stmt).rowcount

    # -- campaign drivers: where a submitted campaign runs, and how it ended ------------------------------------

    def set_submission(self, campaign_id: str, submission_id: str, jobs_address: str | None = None) -> None:
        """Remember the driver of a submitted campaign: its submission id and the Ray Jobs address it went to
        (``None`` for a local background driver), so that status and cancel reach it whatever the environment."""
        self._set_campaign(campaign_id, submission_id=submission_id, jobs_address=jobs_address)

    def close_campaign(self, campaign_id: str, status: str, error: str | None = None) -> list[dict[str, Any]]:
        """End a campaign as ``cancelled`` or ``failed`` with its reason; its pending and running runs take the same
        status (failed runs also the reason). Returns those runs (``id``, ``run_key``, ``mlflow_run_id``)."""
        if status not in ("cancelled", "failed"):
            raise ValueError(f"status: {status!r} is not one of: cancelled, failed")
        with self._write() as s:
            campaign = self._resolve_campaign(s, campaign_id)
            campaign.status, campaign.error = status, error
            runs = list(s.scalars(select(Run).where(Run.campaign_id == campaign.id, Run.status.in_(ACTIVE))))
            now = utcnow()
            for run in runs:
                run.status, run.finished_at = status, now
                if status == "failed":
                    run.error = error
            return [{"id": r.id, "run_key": r.run_key, "mlflow_run_id": r.mlflow_run_id} for r in runs]

    # -- runs -----------------------------------------------------------------------------------------------

    def add_runs(
        self, campaign_id: str, specs: Iterable[Mapping[str, Any]], code_version: str | None = None
    ) -> dict[str, str]:
        """Add the runs of RunSpec dicts as ``pending``; return ``{run_key: run_id}``.

        Idempotent: a ``run_key`` already in the campaign keeps its row (and status) and its existing id is returned.
        """
        rows: dict[str, dict[str, Any]] = {}
        now = utcnow()
        for spec in specs:
            missing = [k for k in ("run_key", "config_hash", "seed", "config") if k not in spec]
            if missing:
                raise ValueError(f"RunSpec lacks {missing}: {dict(spec)!r}")
            config = dict(spec["config"])
            rows.setdefault(
                spec["run_key"],
                {
                    "id": str(uuid.uuid4()),
                    "campaign_id": campaign_id,
                    "run_key": spec["run_key"],
                    "status": "pending",
                    "config": config,
                    "config_hash": spec["config_hash"],
                    "seed": int(spec["seed"]),
                    "repeat": int(spec.get("repeat", 0)),
                    "dataset": dataset_label(config),
                    "family": family_label(config),
                    "code_version": spec.get("code_version", code_version),
                    "attempts": 0,
                    "created_at": now,
                },
            )
        with self._write() as s:
            self._upsert(s, Run, list(rows.values()), ["campaign_id", "run_key"], [])
            keys = list(rows)
            out: dict[str, str] = {}
            for start in range(0, len(keys), _CHUNK):
                stmt = select(Run.run_key, Run.id).where(
                    Run.campaign_id == campaign_id, Run.run_key.in_(keys[start : start + _CHUNK])
                )
                out.update(dict(s.execute(stmt).tuples().all()))
            return {key: out[key] for key in keys}

    def _run(self, s: Session, run_id: str) -> Run:
        run = s.get(Run, run_id)
        if run is None:
            raise StoreLookupError(f"no run with id {run_id!r}")
        return run

    def mark_running(self, run_id: str, attempt: int = 1) -> None:
        """The run has started (again): status ``running``, ``attempts = attempt``, a fresh ``started_at``."""
        with self._write() as s:
            run = self._run(s, run_id)
            run.status, run.attempts, run.started_at = "running", int(attempt), utcnow()
            run.finished_at, run.error = None, None

    def set_run_status(self, run_id: str, status: str, error: str | None = None) -> None:
        """Set a run's status directly (e.g. back to ``pending`` for a resume)."""
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}; allowed: {', '.join(RUN_STATUSES)}")
        with self._write() as s:
            run = self._run(s, run_id)
            run.status, run.error = status, error
            if status in ("finished", "failed", "cancelled"):
                run.finished_at = utcnow()

    def record_result(self, run_id: str, run_result: Mapping[str, Any]) -> None:
        """Record a RunResult dict in one transaction: run status/error/MLflow id/wall time/size, results,
        checkpoints.

        Idempotent: results are keyed by (split, metric, kind, budget) and checkpoints by (step, kind); recording the
        same result again updates those rows instead of adding new ones. NaN values are not stored (no number). A
        result without ``quantity`` gets the one its budget and its run's config imply (``legacy_quantity``);
        without ``selection``, its kind's name.
        """
        status = run_result.get("status", "finished")
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}; allowed: {', '.join(RUN_STATUSES)}")
        now = utcnow()
        given = []
        for r in run_result.get("results") or []:
            value = float(r["value"])
            if not math.isnan(value):
                given.append((r, value))
        checkpoints = [
            {
                "run_id": run_id,
                "step": int(c["step"]),
                "uri": str(c["uri"]),
                "sha256": c.get("sha256"),
                "kind": str(c.get("kind", "step")),
                "created_at": now,
            }
            for c in run_result.get("checkpoints") or []
        ]
        with self._write() as s:
            run = self._run(s, run_id)
            results = [self._result_row(run, r, value, now) for r, value in given]
            run.status = status
            run.error = run_result.get("error")
            run.mlflow_run_id = run_result.get("mlflow_run_id") or run.mlflow_run_id
            if run_result.get("wall_s") is not None:
                run.wall_s = float(run_result["wall_s"])
            if run_result.get("n_params") is not None:
                run.n_params = int(run_result["n_params"])
            if run_result.get("preset"):
                run.preset = str(run_result["preset"])
            if run_result.get("data_digest"):
                run.data_digest = str(run_result["data_digest"])
            run.finished_at = now
            self._upsert(
                s,
                Result,
                results,
                ["run_id", "split", "metric", "kind", "budget"],
                ["value", "step", "quantity", "selection", "n_samples"],
            )
            self._upsert(s, Checkpoint, checkpoints, ["run_id", "step", "kind"], ["uri", "sha256"])

    @staticmethod
    def _result_row(run: Run, r: Mapping[str, Any], value: float, now: datetime) -> dict[str, Any]:
        budget = "" if r.get("budget") is None else str(r["budget"])
        kind = str(r.get("kind", "final"))
        quantity = r.get("quantity") or legacy_quantity(budget, run.family, run.config)
        if quantity not in RESULT_QUANTITIES:
            raise ValueError(f"result quantity {quantity!r} is not one of: {', '.join(RESULT_QUANTITIES)}")
        return {
            "run_id": run.id,
            "split": str(r.get("split", "test")),
            "metric": str(r["metric"]),
            "value": value,
            "budget": budget,
            "step": None if r.get("step") is None else int(r["step"]),
            "kind": kind,
            "quantity": str(quantity),
            "selection": str(r.get("selection") or kind),
            "n_samples": None if r.get("n_samples") is None else int(r["n_samples"]),
            "created_at": now,
        }

    def get_run(self, ref: str, campaign_id: str | None = None) -> dict[str, Any]:
        """A run by id, run key, unique id prefix or unique run-key prefix (within ``campaign_id`` if given),
        with its results, checkpoints and campaign name."""
        with self._read() as s:
            run = s.get(Run, ref)
            if run is None or (campaign_id is not None and run.campaign_id != campaign_id):
                run = self._find_run(s, ref, campaign_id)
            out = _row(run)
            out["campaign_name"] = s.scalar(select(Campaign.name).where(Campaign.id == run.campaign_id))
            res = s.scalars(select(Result).where(Result.run_id == run.id).order_by(Result.metric, Result.split))
            out["results"] = [_row(r) for r in res]
            ckpts = s.scalars(select(Checkpoint).where(Checkpoint.run_id == run.id).order_by(Checkpoint.step))
            out["checkpoints"] = [_row(c) for c in ckpts]
            return out

    def _find_run(self, s: Session, ref: str, campaign_id: str | None) -> Run:
        scope = [] if campaign_id is None else [Run.campaign_id == campaign_id]
        conds = (
            Run.run_key == ref,
            Run.id.startswith(ref, autoescape=True),
            Run.run_key.startswith(ref, autoescape=True),
        )
        for cond in conds:
            matches = list(s.scalars(select(Run).where(cond, *scope).limit(5)))
            if len(matches) == 1 and ref:
                return matches[0]
            if len(matches) > 1:
                where = "" if campaign_id is None else f" in campaign {campaign_id[:8]}"
                found = ", ".join(f"{m.id[:8]} (campaign {m.campaign_id[:8]})" for m in matches)
                raise AmbiguousReferenceError(
                    f"run: {ref!r} matches several runs{where}: {found}; name one by its id or with --campaign"
                )
        where = "" if campaign_id is None else f" in campaign {campaign_id[:8]}"
        raise StoreLookupError(f"run: {ref!r} is no run id, run key or prefix of one{where} (see `nflab status`)")

    def finished_runs_of_config(self, prefix: str) -> list[dict[str, Any]]:
        """The finished runs (outside repro checks) whose config hash starts with ``prefix``, oldest first."""
        stmt = (
            select(Run)
            .where(Run.config_hash.startswith(prefix, autoescape=True), Run.status == "finished")
            .where(Run.campaign_id.not_in(_REPRO_CAMPAIGNS))
            .order_by(Run.finished_at, Run.id)
        )
        with self._read() as s:
            return [_row(r) for r in s.scalars(stmt)] if prefix else []

    def list_runs(
        self, campaign_id: str, status: str | Iterable[str] | None = None, *, with_results: bool = False
    ) -> list[dict[str, Any]]:
        """The runs of a campaign (by run key), optionally only some statuses, optionally with their results."""
        with self._read() as s:
            campaign = self._resolve_campaign(s, campaign_id)
            stmt = select(Run).where(Run.campaign_id == campaign.id)
            if status is not None:
                stmt = stmt.where(Run.status.in_([status] if isinstance(status, str) else list(status)))
            runs = [_row(r) for r in s.scalars(stmt.order_by(Run.run_key))]
            if with_results:
                by_run: dict[str, list[dict[str, Any]]] = {r["id"]: [] for r in runs}
                ids = list(by_run)
                for start in range(0, len(ids), _CHUNK):
                    res = s.scalars(select(Result).where(Result.run_id.in_(ids[start : start + _CHUNK])))
                    for r in res:
                        by_run[r.run_id].append(_row(r))
                for run in runs:
                    run["results"] = by_run[run["id"]]
            return runs

    def result_rows(
        self,
        *,
        metric: str | None = None,
        split: str = "test",
        kind: str | None = "best",
        dataset: str | None = None,
        status: str = "finished",
        study: str | None = None,
    ) -> list[dict[str, Any]]:
        """Flat rows (run + campaign + one result) of runs with ``status`` — the leaderboard's input. ``metric`` or
        ``kind`` None: every metric / kind. A study's trial runs (one seed each, selected on validation) are left
        out unless ``study`` names it, and then only its trials are returned; the re-runs of repro checks always."""
        stmt = (
            select(
                Run.id.label("run_id"),
                Run.campaign_id,
                Campaign.name.label("campaign_name"),
                Run.dataset,
                Run.family,
                Run.config_hash,
                Run.config,
                Run.seed,
                Run.repeat,
                Run.n_params,
                Run.preset,
                Run.data_digest,
                Result.metric,
                Result.kind,
                Result.value,
                Result.budget,
                Result.step,
                Result.quantity,
                Result.selection,
                Result.n_samples,
                Result.created_at,
            )
            .join(Result, Result.run_id == Run.id)
            .join(Campaign, Campaign.id == Run.campaign_id)
            .where(Run.status == status, Result.split == split)
            .where(Run.campaign_id.not_in(_REPRO_CAMPAIGNS))  # a repro check's re-runs never replace the pinned rows
        )
        if metric is not None:
            stmt = stmt.where(Result.metric == metric)
        if kind is not None:
            stmt = stmt.where(Result.kind == kind)
        if dataset is not None:
            stmt = stmt.where(Run.dataset == dataset)
        trial_campaigns = select(Study.campaign_id)
        if study is None:
            stmt = stmt.where(Run.campaign_id.not_in(trial_campaigns))
        else:
            stmt = stmt.where(Run.campaign_id.in_(trial_campaigns.where(Study.name == study)))
        with self._read() as s:
            result = s.execute(stmt)
            keys = list(result.keys())  # once, not per row (a large store has 100,000s of rows)
            rows = [dict(zip(keys, row)) for row in result]
        for row in rows:
            row["created_at"] = _aware(row["created_at"])
        return rows

    def result_metrics(self, *, split: str = "test", dataset: str | None = None) -> dict[str, list[str]]:
        """``{dataset: sorted metrics}`` of the finished runs' results on ``split`` (what the leaderboard can show)."""
        stmt = (
            select(Run.dataset, Result.metric)
            .join(Result, Result.run_id == Run.id)
            .where(Run.status == "finished", Result.split == split)
            .distinct()
        )
        if dataset is not None:
            stmt = stmt.where(Run.dataset == dataset)
        out: dict[str, list[str]] = {}
        with self._read() as s:
            for ds, metric in s.execute(stmt):
                out.setdefault(ds or "?", []).append(metric)
        return {k: sorted(v) for k, v in sorted(out.items())}

    # -- read side of the web leaderboard (nflab serve) -----------------------------------------------------

    def change_marker(self) -> tuple[Any, ...]:
        """A cheap fingerprint of what the leaderboard reads: it changes whenever a run or result is added,
        a run starts, or a run is recorded or ends (``record_result`` stamps ``finished_at`` each time), a study's
        summary is recorded, or a reproducibility schedule or check is added or ends (the repro badges).
        Caches of derived views compare it before serving."""
        with self._read() as s:
            results = s.execute(select(func.count(), func.max(Result.id))).one()
            runs = s.execute(
                select(func.count(), func.max(Run.created_at), func.max(Run.started_at), func.max(Run.finished_at))
            ).one()
            campaigns = s.execute(select(func.count(), func.max(Campaign.created_at))).one()
            studies = s.execute(select(func.count(), func.max(Study.updated_at))).one()
            schedules = s.execute(select(func.count(), func.max(Schedule.id))).one()
            checks = s.execute(select(func.count(), func.max(ReproCheck.id), func.max(ReproCheck.finished_at))).one()
        return (*tuple(results), *(str(v) for v in (*runs, *campaigns, *studies, *schedules, *checks)))

    def run_facets(self) -> dict[str, list[str]]:
        """The distinct campaign names, families and datasets of all runs (filter choices), sorted."""
        with self._read() as s:
            names = s.scalars(select(Campaign.name).distinct())
            families = s.scalars(select(Run.family).where(Run.family.is_not(None)).distinct())
            datasets = s.scalars(select(Run.dataset).where(Run.dataset.is_not(None)).distinct())
            return {"campaigns": sorted(names), "families": sorted(families), "datasets": sorted(datasets)}

    def run_locations(self, run_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """``{run id: (campaign id, run key)}`` of the given runs (unknown ids left out): where their files are."""
        ids = list(dict.fromkeys(run_ids))
        out: dict[str, tuple[str, str]] = {}
        with self._read() as s:
            for start in range(0, len(ids), _CHUNK):
                stmt = select(Run.id, Run.campaign_id, Run.run_key).where(Run.id.in_(ids[start : start + _CHUNK]))
                out.update({rid: (cid, key) for rid, cid, key in s.execute(stmt)})
        return out

    def runs_of_config(self, config_hash: str) -> list[dict[str, Any]]:
        """Every run of one configuration (any campaign, any status), oldest first, each with its campaign name,
        results and checkpoints; empty when no run has this config hash."""
        with self._read() as s:
            stmt = (
                select(Run, Campaign.name, Campaign.mlflow_experiment_id)
                .join(Campaign, Campaign.id == Run.campaign_id)
                .where(Run.config_hash == config_hash)
                .order_by(Run.created_at, Run.run_key)
            )
            runs = []
            for run, name, experiment in s.execute(stmt):
                row = _row(run)
                row["campaign_name"], row["mlflow_experiment_id"] = name, experiment
                runs.append(row)
            ids = [r["id"] for r in runs]
            results: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
            checkpoints: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                for r in s.scalars(select(Result).where(Result.run_id.in_(chunk)).order_by(Result.metric)):
                    results[r.run_id].append(_row(r))
                for c in s.scalars(select(Checkpoint).where(Checkpoint.run_id.in_(chunk)).order_by(Checkpoint.step)):
                    checkpoints[c.run_id].append(_row(c))
            for run in runs:
                run["results"], run["checkpoints"] = results[run["id"]], checkpoints[run["id"]]
            return runs

    # -- schedules and repro checks -------------------------------------------------------------------------

    # -- tuning studies ---------------------------------------------------------------------------------------

    def record_study(self, name: str, campaign_id: str, **fields: Any) -> None:
        """Create or update the summary row of study ``name`` (the columns of ``nflab_studies``)."""
        allowed = {c.key for c in Study.__table__.columns} - {"id", "name", "campaign_id", "created_at", "updated_at"}
        if set(fields) - allowed:
            raise ValueError(f"cannot record {sorted(set(fields) - allowed)}; allowed: {sorted(allowed)}")
        now = utcnow()
        with self._write() as s:
            row = s.scalars(select(Study).where(Study.name == name)).first()
            if row is None:
                defaults = {"objectives": [], "directions": [], "sampler": "", "pruner": "", "n_trials": 0}
                defaults |= {"status": "running", "counts": {}, "best": []}
                row = Study(name=name, campaign_id=campaign_id, created_at=now, **(defaults | fields))
                s.add(row)
            else:
                row.campaign_id = campaign_id
                for key, value in fields.items():
                    setattr(row, key, value)
            row.updated_at = now

    def get_study(self, name: str) -> dict[str, Any]:
        """A study's summary row (``StoreLookupError`` when nflab has none of that name)."""
        with self._read() as s:
            row = s.scalars(select(Study).where(Study.name == name)).first()
            if row is None:
                raise StoreLookupError(f"no study named {name!r} in the store")
            return _row(row)

    def list_study_rows(self) -> list[dict[str, Any]]:
        """Every study's summary row, the newest first."""
        with self._read() as s:
            return [_row(x) for x in s.scalars(select(Study).order_by(Study.created_at.desc(), Study.name))]

    def add_schedule(
        self,
        name: str,
        target: str,
        *,
        cron: str | None = None,
        every_s: int | None = None,
        timezone: str = "UTC",
        target_kind: str = "pipeline",
        k_sigma: float = 3.0,
        tolerance: float | None = None,
        pin: Mapping[str, Any] | None = None,
        anchor_at: datetime | None = None,
        code_version: str | None = None,
        enabled: bool = True,
    ) -> int:
        """Add a schedule (``cron`` expression or ``every_s`` seconds; one of them is required); return its id."""
        if (cron is None) == (every_s is None):
            raise ValueError("a schedule needs exactly one of cron=... or every_s=...")
        with self._write() as s:
            if s.scalar(select(Schedule.id).where(Schedule.name == name)) is not None:
                raise ValueError(f"a schedule named {name!r} already exists")
            sched = Schedule(
                name=name,
                target=str(target),
                cron=cron,
                every_s=every_s,
                timezone=timezone,
                target_kind=target_kind,
                k_sigma=float(k_sigma),
                code_version=code_version,
                tolerance=tolerance,
                pin=None if pin is None else dict(pin),
                anchor_at=anchor_at,
                enabled=enabled,
                created_at=utcnow(),
            )
            s.add(sched)
            s.flush()
            return sched.id

    def _schedule(self, s: Session, ref: int | str) -> Schedule:
        cond = Schedule.id == ref if isinstance(ref, int) else Schedule.name == ref
        found = s.scalars(select(Schedule).where(cond)).first()
        if found is None and isinstance(ref, str) and ref.isdigit():
            found = s.get(Schedule, int(ref))
        if found is None:
            names = ", ".join(s.scalars(select(Schedule.name).order_by(Schedule.name).limit(20))) or "none yet"
            raise StoreLookupError(f"schedule: {ref!r} is no schedule name or id; allowed: {names}")
        return found

    def get_schedule(self, ref: int | str) -> dict[str, Any]:
        """A schedule by id or name."""
        with self._read() as s:
            return _row(self._schedule(s, ref))

    def list_schedules(self, *, enabled_only: bool = False) -> list[dict[str, Any]]:
        """All schedules by name (only the enabled ones if asked)."""
        stmt = select(Schedule).order_by(Schedule.name)
        if enabled_only:
            stmt = stmt.where(Schedule.enabled.is_(True))
        with self._read() as s:
            return [_row(x) for x in s.scalars(stmt)]

    SCHEDULE_FIELDS = frozenset(
        {"target", "cron", "every_s", "timezone", "code_version", "tolerance", "k_sigma", "enabled", "last_run_at",
         "anchor_at", "pin"}
    )  # fmt: skip

    def update_schedule(self, ref: int | str, **fields: Any) -> None:
        """Change some of ``SCHEDULE_FIELDS``."""
        if set(fields) - self.SCHEDULE_FIELDS:
            raise ValueError(
                f"cannot update {sorted(set(fields) - self.SCHEDULE_FIELDS)}; allowed: {sorted(self.SCHEDULE_FIELDS)}"
            )
        with self._write() as s:
            sched = self._schedule(s, ref)
            for key, value in fields.items():
                setattr(sched, key, value)

    def mark_schedule_run(self, ref: int | str, when: datetime | None = None) -> None:
        """Set a schedule's ``last_run_at`` (now by default)."""
        self.update_schedule(ref, last_run_at=when or utcnow())

    def delete_schedule(self, ref: int | str) -> None:
        """Remove a schedule and its repro checks."""
        with self._write() as s:
            sched = self._schedule(s, ref)
            s.execute(delete(ReproCheck).where(ReproCheck.schedule_id == sched.id))
            s.delete(sched)

    def add_repro_check(
        self,
        schedule_id: int,
        status: str,
        details: Mapping[str, Any] | None = None,
        campaign_id: str | None = None,
        **fields: Any,
    ) -> int:
        """Record a repro check (``fields``: due_at, trigger, reason, host, pid, finished_at); return its id."""
        with self._write() as s:
            check = ReproCheck(
                schedule_id=schedule_id,
                campaign_id=campaign_id,
                status=status,
                details=dict(details or {}),
                created_at=utcnow(),
                **fields,
            )
            s.add(check)
            s.flush()
            return check.id

    def claim_check(
        self,
        schedule_id: int,
        due_at: datetime | None,
        *,
        trigger: str,
        host: str,
        pid: int,
        is_stale: Any = None,
    ) -> dict[str, Any] | None:
        """Claim the check of ``schedule_id`` due at ``due_at`` (None: a manual run) in one transaction.

        If a check of the schedule is still ``running`` (and ``is_stale(row)`` does not call it abandoned), the
        claim is recorded as ``skipped`` naming that check; a running check that ``is_stale`` calls abandoned is
        marked ``failed`` first. Returns the new row, or None when another writer holds the (schedule, due time)
        pair already — the unique constraint decides, on SQLite and PostgreSQL alike.
        """
        now = utcnow()
        try:
            with self._write() as s:
                running = list(
                    s.scalars(
                        select(ReproCheck).where(ReproCheck.schedule_id == schedule_id, ReproCheck.status == "running")
                    )
                )
                busy = None
                for row in running:
                    stale = is_stale(_row(row)) if is_stale is not None else None
                    if stale:
                        row.status, row.reason, row.finished_at = "failed", stale, now
                    else:
                        busy = row
                status, reason = "running", None
                if busy is not None:
                    status = "skipped"
                    reason = f"check {busy.id} (started {_aware(busy.created_at):%Y-%m-%d %H:%M} UTC) is still running"
                check = ReproCheck(
                    schedule_id=schedule_id,
                    status=status,
                    details={},
                    created_at=now,
                    due_at=due_at,
                    trigger=trigger,
                    reason=reason,
                    host=host[:200],
                    pid=pid,
                    finished_at=now if status == "skipped" else None,
                )
                s.add(check)
                s.flush()
                return _row(check)
        except IntegrityError:
            return None

    def finish_check(self, check_id: int, **fields: Any) -> None:
        """Write a claimed check's outcome once (status, reason, details, campaign_id, finished_at)."""
        allowed = {"status", "reason", "details", "campaign_id", "finished_at"}
        if set(fields) - allowed:
            raise ValueError(f"cannot set {sorted(set(fields) - allowed)}; allowed: {sorted(allowed)}")
        with self._write() as s:
            check = s.get(ReproCheck, check_id)
            if check is None:
                raise StoreLookupError(f"no repro check with id {check_id}")
            for key, value in fields.items():
                setattr(check, key, value)

    def last_due_at(self, schedule_id: int) -> datetime | None:
        """The latest due time a check of the schedule was claimed for (None if none)."""
        with self._read() as s:
            return _aware(s.scalar(select(func.max(ReproCheck.due_at)).where(ReproCheck.schedule_id == schedule_id)))

    def list_repro_checks(self, schedule_id: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The newest repro checks (of one schedule if given)."""
        stmt = select(ReproCheck).order_by(ReproCheck.created_at.desc(), ReproCheck.id.desc()).limit(limit)
        if schedule_id is not None:
            stmt = stmt.where(ReproCheck.schedule_id == schedule_id)
        with self._read() as s:
            return [_row(x) for x in s.scalars(stmt)]

    def latest_verdicts(self) -> dict[int, dict[str, Any]]:
        """schedule id → its newest check that has a verdict (not running, skipped or cancelled)."""
        verdicts = ("reproduced", "drift", "env-changed", "failed")
        stmt = (
            select(ReproCheck)
            .where(ReproCheck.status.in_(verdicts))
            .order_by(ReproCheck.schedule_id, ReproCheck.created_at.desc(), ReproCheck.id.desc())
        )
        out: dict[int, dict[str, Any]] = {}
        with self._read() as s:
            for row in s.scalars(stmt):
                out.setdefault(row.schedule_id, _row(row))
        return out


def open_store(url: str | None = None) -> Store:
    """A Store for ``url``, or for the configured ``NFLAB_DB_URL`` / embedded default."""
    if url is None:
        from nflab.settings import load_settings

        url = load_settings().db_url
    return Store(url)


def dataset_label(config: Mapping[str, Any]) -> str | None:
    """The run's dataset, or for a fit1d run (a regression, no dataset) its 1-D target, for a coupling_linear run
    ``linear-maps-<d>d``."""
    if config.get("kind") == "fit1d":
        return config["fit1d"]["target"]
    if config.get("kind") == "coupling_linear":
        return f"linear-maps-{config['coupling_linear']['dim']}d"
    analysis = config.get("analysis") or {}  # a fit1d run written before migration 0005
    return (config.get("dataset") or {}).get("name") or (
        analysis.get("target") if analysis.get("kind") == "fit1d" else None
    )


def family_label(config: Mapping[str, Any]) -> str | None:
    """The run's model family, or ``fit1d:<variant>`` for a fit1d run (no model), ``coupling_linear`` for an E6 run."""
    if config.get("kind") == "fit1d":
        return f"fit1d:{config['fit1d']['variant']}"
    if config.get("kind") == "coupling_linear":
        return "coupling_linear"
    analysis = config.get("analysis") or {}
    family = (config.get("model") or {}).get("family")
    return family or (f"fit1d:{analysis.get('variant')}" if analysis.get("kind") == "fit1d" else None)
