"""Results say what they are and which rule chose their checkpoint; runs keep their size and data fingerprint.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Results gain ``quantity`` (exact | unbiased | bound | biased | joint: what kind of number the value is),
``selection`` (the rule that chose the checkpoint: ``val-best``, ``final``, ``last-N-mean``, or for rows written
before this revision ``test-best``, the old best-on-the-test-set rule) and ``n_samples`` (how many held-out points
the value averages); the result kind ``mean`` (the mean over the last N evaluations) is allowed. Runs gain
``n_params``, ``preset`` (the model's size class) and ``data_digest``.

Rows written before this revision get a quantity derived from what was recorded (``nflab.db_models.
legacy_quantity``): ``joint`` for zero padding (its number was the joint density at ε = 0, recorded with budget
``exact``); ``biased`` for ``series-*`` budgets; ``bound`` for CIF, importance-weighted budgets (``iwae-*``),
Gaussian padding and variational dequantization; ``unbiased`` for ``rr-*`` budgets; ``exact`` otherwise. Their
selection is ``test-best`` for kind ``best`` and the kind's name otherwise. Downgrade keeps every row: ``mean``
rows become kind ``last`` (allowed before), the new columns are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nflab.db_models import legacy_quantity

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS_0003 = "kind IN ('best', 'final', 'last')"
_KINDS_0004 = "kind IN ('best', 'final', 'last', 'mean')"
_QUANTITIES = "quantity IN ('exact', 'unbiased', 'bound', 'biased', 'joint')"
_BATCH = 500


def _fill_legacy_rows() -> None:
    bind = op.get_bind()
    results = sa.table(
        "nflab_results",
        sa.column("id", sa.Integer),
        sa.column("run_id", sa.String),
        sa.column("budget", sa.String),
        sa.column("kind", sa.String),
        sa.column("quantity", sa.String),
        sa.column("selection", sa.String),
    )
    runs = sa.table(
        "nflab_runs", sa.column("id", sa.String), sa.column("family", sa.String), sa.column("config", sa.JSON)
    )
    rows = bind.execute(
        sa.select(results.c.id, results.c.budget, results.c.kind, runs.c.family, runs.c.config).join(
            runs, runs.c.id == results.c.run_id
        )
    ).all()
    updates = [
        {
            "rid": row.id,
            "q": legacy_quantity(row.budget or "", row.family, row.config),
            "s": "test-best" if row.kind == "best" else row.kind,
        }
        for row in rows
    ]
    stmt = (
        sa.update(results)
        .where(results.c.id == sa.bindparam("rid"))
        .values(quantity=sa.bindparam("q"), selection=sa.bindparam("s"))
    )
    for start in range(0, len(updates), _BATCH):
        bind.execute(stmt, updates[start : start + _BATCH])


def upgrade() -> None:
    """Add the columns, fill them for the rows already there, allow kind ``mean``."""
    with op.batch_alter_table("nflab_results") as batch:
        batch.add_column(sa.Column("quantity", sa.String(20), nullable=False, server_default="exact"))
        batch.add_column(sa.Column("selection", sa.String(40), nullable=False, server_default="final"))
        batch.add_column(sa.Column("n_samples", sa.Integer(), nullable=True))
    _fill_legacy_rows()
    with op.batch_alter_table("nflab_results") as batch:
        batch.drop_constraint("ck_nflab_results_kind", type_="check")
        batch.create_check_constraint("ck_nflab_results_kind", _KINDS_0004)
        batch.create_check_constraint("ck_nflab_results_quantity", _QUANTITIES)
    with op.batch_alter_table("nflab_runs") as batch:
        batch.add_column(sa.Column("n_params", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("preset", sa.String(50), nullable=True))
        batch.add_column(sa.Column("data_digest", sa.String(64), nullable=True))


def downgrade() -> None:
    """Back to 0003 without losing a row: ``mean`` results become kind ``last``; the new columns go."""
    with op.batch_alter_table("nflab_runs") as batch:
        batch.drop_column("data_digest")
        batch.drop_column("preset")
        batch.drop_column("n_params")
    op.execute("UPDATE nflab_results SET kind = 'last' WHERE kind = 'mean'")
    with op.batch_alter_table("nflab_results") as batch:
        batch.drop_constraint("ck_nflab_results_quantity", type_="check")
        batch.drop_constraint("ck_nflab_results_kind", type_="check")
        batch.create_check_constraint("ck_nflab_results_kind", _KINDS_0003)
        batch.drop_column("n_samples")
        batch.drop_column("selection")
        batch.drop_column("quantity")
