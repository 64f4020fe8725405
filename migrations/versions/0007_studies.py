"""Tuning studies: ``nflab_studies``, one row per Optuna study (its trial campaign, objectives, counts, best trials).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

The study itself stays in Optuna's storage; this row is what the leaderboard and the web page read: which campaign
holds the study's trial runs (the leaderboard leaves them out unless asked for that study), and the best trial(s)
with their parameters and objective values. Downgrade drops only this new table.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create ``nflab_studies``."""
    op.create_table(
        "nflab_studies",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("campaign_id", sa.String(36), nullable=False),
        sa.Column("objectives", sa.JSON(), nullable=False),
        sa.Column("directions", sa.JSON(), nullable=False),
        sa.Column("sampler", sa.String(30), nullable=False),
        sa.Column("pruner", sa.String(30), nullable=False),
        sa.Column("n_trials", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("best", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint("status IN ('running', 'finished', 'interrupted')", name="ck_nflab_studies_status"),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["nflab_campaigns.id"], name="fk_nflab_studies_campaign_id_nflab_campaigns"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_nflab_studies"),
        sa.UniqueConstraint("name", name="uq_nflab_studies_name"),
        sa.UniqueConstraint("campaign_id", name="uq_nflab_studies_campaign_id"),
    )


def downgrade() -> None:
    """Drop ``nflab_studies`` (nothing else changes)."""
    op.drop_table("nflab_studies")
