"""Indexes for large stores: status counts per campaign, the newest campaigns, and the leaderboard's join.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

- ``nflab_runs (campaign_id, status)``: ``nflab status`` counts runs by status per campaign;
- ``nflab_campaigns (created_at)``: ``nflab status`` lists the newest campaigns first;
- ``nflab_results (split, kind, metric, run_id)``: the leaderboard selects the results of one split/kind/metric
  and joins them to their runs without reading the table.

Downgrade only drops the indexes: no row or column is lost either way.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the indexes."""
    op.create_index("ix_nflab_runs_campaign_status", "nflab_runs", ["campaign_id", "status"])
    op.create_index("ix_nflab_campaigns_created_at", "nflab_campaigns", ["created_at"])
    op.create_index("ix_nflab_results_split_kind_metric_run", "nflab_results", ["split", "kind", "metric", "run_id"])


def downgrade() -> None:
    """Drop the indexes (data untouched)."""
    op.drop_index("ix_nflab_results_split_kind_metric_run", table_name="nflab_results")
    op.drop_index("ix_nflab_campaigns_created_at", table_name="nflab_campaigns")
    op.drop_index("ix_nflab_runs_campaign_status", table_name="nflab_runs")
