"""Indexes for the status/driver queries (runs by status) and the leaderboard (results by metric/split/kind).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Downgrade only drops the two indexes: no row or column is lost either way.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the query indexes."""
    op.create_index("ix_nflab_runs_status", "nflab_runs", ["status"])
    op.create_index("ix_nflab_results_metric_split_kind", "nflab_results", ["metric", "split", "kind"])


def downgrade() -> None:
    """Drop the query indexes (data untouched)."""
    op.drop_index("ix_nflab_results_metric_split_kind", table_name="nflab_results")
    op.drop_index("ix_nflab_runs_status", table_name="nflab_runs")
