"""nflab's SQL tables (SQLAlchemy 2.x typed ORM). Every table is prefixed ``nflab_`` so that it can sit next
to MLflow's and Optuna's; the schema is owned by the Alembic revisions in ``migrations/versions``.

Timestamps are timezone-aware UTC (SQLite hands them back naive: the store re-attaches UTC).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

RUN_STATUSES = ("pending", "running", "finished", "failed", "cancelled")
RESULT_KINDS = ("best", "final", "last", "mean")
#: what a result's value is (the flows' ``LIKELIHOOD_KINDS``; ``exact`` also for non-likelihood metrics such as mse)
RESULT_QUANTITIES = ("exact", "unbiased", "bound", "biased", "joint")
CHECKPOINT_KINDS = ("step", "best")


def legacy_quantity(budget: str, family: str | None, config: Mapping[str, Any] | None) -> str:
    """What a result that does not say what it is (rows written before migration 0004) was, from its budget and
    its run's family and config; the weakest claim wins: zero padding recorded the joint density at ε = 0
    (``joint``), a truncated series is ``biased``, CIF / importance weights / Gaussian padding / variational
    dequantization give a ``bound``, Russian roulette is ``unbiased``, anything else ``exact``."""
    model = (config or {}).get("model") or {}
    padding = model.get("padding") or 0
    if padding and model.get("padding_kind") == "zero":
        return "joint"
    if budget.startswith("series-"):
        return "biased"
    if (
        family == "cif"
        or budget.startswith("iwae-")
        or (padding and model.get("padding_kind", "gaussian") == "gaussian")
        or model.get("dequantization") == "variational"
    ):
        return "bound"
    if budget.startswith("rr-"):
        return "unbiased"
    return "exact"


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base carrying the constraint naming convention (needed by SQLite batch migrations)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Campaign(Base):
    """One expanded pipeline: a set of runs, one MLflow experiment, optionally one Ray job."""

    __tablename__ = "nflab_campaigns"
    __table_args__ = (Index("ix_nflab_campaigns_created_at", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    pipeline_yaml: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(20))
    submission_id: Mapped[str | None] = mapped_column(String(200))
    mlflow_experiment_id: Mapped[str | None] = mapped_column(String(64))
    jobs_address: Mapped[str | None] = mapped_column(String(500))
    error: Mapped[str | None] = mapped_column(Text)


class Run(Base):
    """One resolved configuration × seed of a campaign."""

    __tablename__ = "nflab_runs"
    __table_args__ = (
        UniqueConstraint("campaign_id", "run_key"),
        CheckConstraint(f"status IN {RUN_STATUSES!r}", name="status"),
        Index("ix_nflab_runs_status", "status"),
        Index("ix_nflab_runs_campaign_status", "campaign_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("nflab_campaigns.id"), index=True)
    run_key: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))
    config: Mapped[dict[str, Any]]
    config_hash: Mapped[str] = mapped_column(String(64), index=True)
    seed: Mapped[int] = mapped_column(BigInteger)
    repeat: Mapped[int] = mapped_column(Integer)
    dataset: Mapped[str | None] = mapped_column(String(100))
    family: Mapped[str | None] = mapped_column(String(100))
    code_version: Mapped[str | None] = mapped_column(String(100))
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    wall_s: Mapped[float | None] = mapped_column(Double)
    n_params: Mapped[int | None] = mapped_column(BigInteger)
    preset: Mapped[str | None] = mapped_column(String(50))
    data_digest: Mapped[str | None] = mapped_column(String(64))


class Result(Base):
    """One reported number of a run: (split, metric, kind, estimator budget) → value.

    ``kind`` names the checkpoint (``best``: the selected one, ``final``, ``mean``: an average over the last
    evaluations); ``selection`` the rule behind it (``val-best``, ``final``, ``last-N-mean``; ``test-best`` for rows
    written before migration 0004); ``quantity`` what the value is (``RESULT_QUANTITIES``); ``n_samples`` how many
    held-out points it averages.
    """

    __tablename__ = "nflab_results"
    __table_args__ = (
        UniqueConstraint("run_id", "split", "metric", "kind", "budget"),
        CheckConstraint(f"kind IN {RESULT_KINDS!r}", name="kind"),
        CheckConstraint(f"quantity IN {RESULT_QUANTITIES!r}", name="quantity"),
        Index("ix_nflab_results_metric_split_kind", "metric", "split", "kind"),
        Index("ix_nflab_results_split_kind_metric_run", "split", "kind", "metric", "run_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("nflab_runs.id"), index=True)
    split: Mapped[str] = mapped_column(String(20))
    metric: Mapped[str] = mapped_column(String(50))
    value: Mapped[float] = mapped_column(Double)
    budget: Mapped[str] = mapped_column(String(50))
    step: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime]
    quantity: Mapped[str] = mapped_column(String(20), server_default="exact")
    selection: Mapped[str] = mapped_column(String(40), server_default="final")
    n_samples: Mapped[int | None] = mapped_column(Integer)


class Checkpoint(Base):
    """A checkpoint a run wrote (URI + content hash); ``kind`` is ``step`` (resumable state) or ``best``
    (the evaluated weights of the best validation step), and both may exist at one step."""

    __tablename__ = "nflab_checkpoints"
    __table_args__ = (
        UniqueConstraint("run_id", "step", "kind"),
        CheckConstraint(f"kind IN {CHECKPOINT_KINDS!r}", name="kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("nflab_runs.id"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(10), server_default="step")
    created_at: Mapped[datetime]


STUDY_STATUSES = ("running", "finished", "interrupted")


class Study(Base):
    """A tuning study's summary (the study itself lives in Optuna's storage): its campaign of trial runs, objectives
    and directions, trial counts by state, and the best trial(s) — the best feasible trial for one objective, the
    feasible Pareto front for several — as ``[{number, values, params, run_id, run_key}]``."""

    __tablename__ = "nflab_studies"
    __table_args__ = (CheckConstraint(f"status IN {STUDY_STATUSES!r}", name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("nflab_campaigns.id"), unique=True)
    objectives: Mapped[list[str]] = mapped_column(JSON)
    directions: Mapped[list[str]] = mapped_column(JSON)
    sampler: Mapped[str] = mapped_column(String(30))
    pruner: Mapped[str] = mapped_column(String(30))
    n_trials: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    counts: Mapped[dict[str, Any]]
    best: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Schedule(Base):
    """A recurring reproducibility run of a pipeline at a pinned code version."""

    __tablename__ = "nflab_schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    pipeline_path: Mapped[str] = mapped_column(Text)
    cron: Mapped[str | None] = mapped_column(String(100))
    every_s: Mapped[int | None] = mapped_column(Integer)
    code_version: Mapped[str | None] = mapped_column(String(100))
    tolerance: Mapped[float | None] = mapped_column(Double)
    enabled: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime]
    last_run_at: Mapped[datetime | None]


class ReproCheck(Base):
    """The outcome of one scheduled reproducibility run (compared against the reference within tolerance)."""

    __tablename__ = "nflab_repro_checks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("nflab_schedules.id"), index=True)
    campaign_id: Mapped[str | None] = mapped_column(ForeignKey("nflab_campaigns.id"))
    status: Mapped[str] = mapped_column(String(20))
    details: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


TABLES: tuple[str, ...] = tuple(Base.metadata.tables)


def too_long(model: type[Base], values: dict[str, Any]) -> tuple[str, int] | None:
    """The first ``(column, max length)`` of ``model`` whose string column a value of ``values`` would overflow
    (PostgreSQL refuses it; SQLite would store it), or None when every value fits."""
    for name, value in values.items():
        length = getattr(model.__table__.columns[name].type, "length", None)
        if isinstance(value, str) and length is not None and len(value) > length:
            return name, length
    return None
