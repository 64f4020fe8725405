"""Checkpoints keyed by (run, step, kind); campaigns remember their Ray Jobs address and failure reason.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

A run writes a step checkpoint and a best checkpoint at the same step; keyed by (run, step) alone, PostgreSQL
refused the pair in one upsert and SQLite let the best file's row overwrite the step file's. Existing rows become
``kind='step'`` unless their URI names a ``best_step_`` file. Downgrade keeps one row per (run, step) (the step
file's) and drops the new columns; campaigns and runs are untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add checkpoints.kind (and re-key), campaigns.jobs_address and campaigns.error."""
    with op.batch_alter_table("nflab_checkpoints") as batch:
        batch.add_column(sa.Column("kind", sa.String(10), nullable=False, server_default="step"))
    op.execute("UPDATE nflab_checkpoints SET kind = 'best' WHERE uri LIKE '%/best_step_%'")
    with op.batch_alter_table("nflab_checkpoints") as batch:
        batch.drop_constraint("uq_nflab_checkpoints_run_id_step", type_="unique")
        batch.create_unique_constraint("uq_nflab_checkpoints_run_id_step_kind", ["run_id", "step", "kind"])
        batch.create_check_constraint("ck_nflab_checkpoints_kind", "kind IN ('step', 'best')")
    with op.batch_alter_table("nflab_campaigns") as batch:
        batch.add_column(sa.Column("jobs_address", sa.String(500), nullable=True))
        batch.add_column(sa.Column("error", sa.Text(), nullable=True))


def downgrade() -> None:
    """Back to (run, step) checkpoints: best rows that share a step with a step row are dropped."""
    with op.batch_alter_table("nflab_campaigns") as batch:
        batch.drop_column("error")
        batch.drop_column("jobs_address")
    op.execute(
        "DELETE FROM nflab_checkpoints WHERE kind = 'best' AND EXISTS (SELECT 1 FROM nflab_checkpoints AS o "
        "WHERE o.run_id = nflab_checkpoints.run_id AND o.step = nflab_checkpoints.step AND o.kind = 'step')"
    )
    with op.batch_alter_table("nflab_checkpoints") as batch:
        batch.drop_constraint("ck_nflab_checkpoints_kind", type_="check")
        batch.drop_constraint("uq_nflab_checkpoints_run_id_step_kind", type_="unique")
        batch.create_unique_constraint("uq_nflab_checkpoints_run_id_step", ["run_id", "step"])
        batch.drop_column("kind")
