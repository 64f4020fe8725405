"""Initial nflab schema: campaigns, runs, results, checkpoints, schedules, repro checks.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create every nflab table."""
    op.create_table(
        "nflab_campaigns",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("pipeline_yaml", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("submission_id", sa.String(200), nullable=True),
        sa.Column("mlflow_experiment_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_nflab_campaigns"),
    )
    op.create_index("ix_nflab_campaigns_fingerprint", "nflab_campaigns", ["fingerprint"])

    op.create_table(
        "nflab_runs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("campaign_id", sa.String(36), nullable=False),
        sa.Column("run_key", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("repeat", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.String(100), nullable=True),
        sa.Column("family", sa.String(100), nullable=True),
        sa.Column("code_version", sa.String(100), nullable=True),
        sa.Column("mlflow_run_id", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("wall_s", sa.Double(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'finished', 'failed', 'cancelled')", name="ck_nflab_runs_status"
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["nflab_campaigns.id"], name="fk_nflab_runs_campaign_id_nflab_campaigns"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_nflab_runs"),
        sa.UniqueConstraint("campaign_id", "run_key", name="uq_nflab_runs_campaign_id_run_key"),
    )
    op.create_index("ix_nflab_runs_campaign_id", "nflab_runs", ["campaign_id"])
    op.create_index("ix_nflab_runs_config_hash", "nflab_runs", ["config_hash"])

    op.create_table(
        "nflab_results",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("split", sa.String(20), nullable=False),
        sa.Column("metric", sa.String(50), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("budget", sa.String(50), nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("kind IN ('best', 'final', 'last')", name="ck_nflab_results_kind"),
        sa.ForeignKeyConstraint(["run_id"], ["nflab_runs.id"], name="fk_nflab_results_run_id_nflab_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_nflab_results"),
        sa.UniqueConstraint(
            "run_id", "split", "metric", "kind", "budget", name="uq_nflab_results_run_id_split_metric_kind_budget"
        ),
    )
    op.create_index("ix_nflab_results_run_id", "nflab_results", ["run_id"])

    op.create_table(
        "nflab_checkpoints",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["nflab_runs.id"], name="fk_nflab_checkpoints_run_id_nflab_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_nflab_checkpoints"),
        sa.UniqueConstraint("run_id", "step", name="uq_nflab_checkpoints_run_id_step"),
    )
    op.create_index("ix_nflab_checkpoints_run_id", "nflab_checkpoints", ["run_id"])

    op.create_table(
        "nflab_schedules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("pipeline_path", sa.Text(), nullable=False),
        sa.Column("cron", sa.String(100), nullable=True),
        sa.Column("every_s", sa.Integer(), nullable=True),
        sa.Column("code_version", sa.String(100), nullable=True),
        sa.Column("tolerance", sa.Double(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_run_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_nflab_schedules"),
        sa.UniqueConstraint("name", name="uq_nflab_schedules_name"),
    )

    op.create_table(
        "nflab_repro_checks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("schedule_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.String(36), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["schedule_id"], ["nflab_schedules.id"], name="fk_nflab_repro_checks_schedule_id_nflab_schedules"
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["nflab_campaigns.id"], name="fk_nflab_repro_checks_campaign_id_nflab_campaigns"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_nflab_repro_checks"),
    )
    op.create_index("ix_nflab_repro_checks_schedule_id", "nflab_repro_checks", ["schedule_id"])


def downgrade() -> None:
    """Drop every nflab table (this is the base: it removes all of nflab's data, by definition)."""
    op.drop_table("nflab_repro_checks")
    op.drop_table("nflab_schedules")
    op.drop_table("nflab_checkpoints")
    op.drop_table("nflab_results")
    op.drop_table("nflab_runs")
    op.drop_table("nflab_campaigns")
