"""Scheduled reproducibility runs: schedules carry a pin, a timezone and the statistical tier's options; repro checks
carry the due time they were claimed for, a one-line reason and who ran them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

``nflab_schedules`` gains ``target_kind`` (pipeline | config | campaign; ``pipeline_path`` keeps the target),
``timezone`` (IANA name, ``UTC`` for rows written before), ``k_sigma`` (3), ``anchor_at`` (due times before it are
never run; NULL: the row's ``created_at``) and ``pin`` (JSON; NULL for rows written before: such a schedule must
be added again to be checked). ``nflab_repro_checks`` gains ``due_at``, ``trigger`` (due | manual; ``manual`` for
rows written before), ``reason``, ``host``, ``pid`` and ``finished_at``, and the unique pair
(``schedule_id``, ``due_at``): the claim of a due time. Rows written before have no due time (NULL), and NULLs
never collide, so every existing row is kept as it is.

Downgrade drops the pair and the new columns; every row stays.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
UNIQUE_DUE = "uq_nflab_repro_checks_schedule_id_due_at"


def upgrade() -> None:
    """Add the columns (with defaults for existing rows) and the claim's unique pair."""
    with op.batch_alter_table("nflab_schedules") as batch:
        batch.add_column(sa.Column("target_kind", sa.String(20), nullable=False, server_default="pipeline"))
        batch.add_column(sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"))
        batch.add_column(sa.Column("k_sigma", sa.Double(), nullable=False, server_default="3"))
        batch.add_column(sa.Column("anchor_at", TS, nullable=True))
        batch.add_column(sa.Column("pin", sa.JSON(), nullable=True))
    with op.batch_alter_table("nflab_repro_checks") as batch:
        batch.add_column(sa.Column("due_at", TS, nullable=True))
        batch.add_column(sa.Column("trigger", sa.String(20), nullable=False, server_default="manual"))
        batch.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("host", sa.String(200), nullable=True))
        batch.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("finished_at", TS, nullable=True))
        batch.create_unique_constraint(UNIQUE_DUE, ["schedule_id", "due_at"])


def downgrade() -> None:
    """Drop the pair and the new columns (rows kept)."""
    with op.batch_alter_table("nflab_repro_checks") as batch:
        batch.drop_constraint(UNIQUE_DUE, type_="unique")
        for column in ("finished_at", "pid", "host", "reason", "trigger", "due_at"):
            batch.drop_column(column)
    with op.batch_alter_table("nflab_schedules") as batch:
        for column in ("pin", "anchor_at", "k_sigma", "timezone", "target_kind"):
            batch.drop_column(column)
