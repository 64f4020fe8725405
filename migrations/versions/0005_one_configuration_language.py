"""Run configs in the one configuration language: every option resolved for its kind of data, the estimator section
merged into the model, one name per idea; config hashes recomputed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

Each run config written by the previous version (it holds an ``estimator`` section) is resolved again
(``nflab.pipelines.upgrade.upgrade_config``) and its ``config_hash`` recomputed from it, so that seeds of one
configuration still share a hash (the leaderboard shows the same rows) and a run of a new campaign with the same
configuration joins them. A config this version cannot resolve any more is left as it was (it keeps its hash and its
rows). Run keys, seeds, results and checkpoints are untouched. Campaign fingerprints are not recomputed: re-running
an old pipeline starts a new campaign. Downgrade keeps the upgraded configs (the previous version reads them: a
missing ``estimator`` section means the family's defaults).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nflab.pipelines.errors import Invalid
from nflab.pipelines.hashing import canonical_json, config_hash

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _written_before(config: object) -> bool:
    """A config resolved by the previous version: it always held an ``estimator`` section (or, for E1, an analysis
    of kind ``fit1d``); configs of this version hold neither, so an upgrade after a downgrade changes nothing."""
    if not isinstance(config, dict):
        return False
    return "estimator" in config or (config.get("analysis") or {}).get("kind") == "fit1d"


def upgrade() -> None:
    from nflab.pipelines.upgrade import upgrade_config  # imports the flow family: only when this revision runs

    bind = op.get_bind()
    runs = sa.table(
        "nflab_runs", sa.column("id", sa.String), sa.column("config", sa.JSON), sa.column("config_hash", sa.String)
    )
    rows = bind.execute(sa.select(runs.c.id, runs.c.config)).all()
    upgraded: dict[str, tuple[dict, str]] = {}
    cache: dict[str, tuple[dict, str]] = {}
    for run_id, config in rows:
        if not _written_before(config):
            continue
        key = canonical_json(config)
        if key not in cache:
            try:
                new = upgrade_config(config)
            except (Invalid, ValueError, KeyError, TypeError):
                continue  # kept as it was
            cache[key] = (new, config_hash(new))
        upgraded[run_id] = cache[key]
    for run_id, (new, digest) in upgraded.items():
        bind.execute(sa.update(runs).where(runs.c.id == run_id).values(config=new, config_hash=digest))


def downgrade() -> None:
    pass  # the upgraded configs stay: nothing is lost, and the previous version reads them
