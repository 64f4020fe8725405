"""Programmatic Alembic for nflab's own tables: upgrade, downgrade, current revision, drift check.

The scripts live in the repository's ``migrations/`` folder (``$NFLAB_MIGRATIONS`` overrides); the version
table is ``nflab_alembic_version`` so MLflow's and Optuna's ``alembic_version`` is never touched.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import create_engine, pool

import nflab

VERSION_TABLE = "nflab_alembic_version"


class MigrationError(RuntimeError):
    """The migration scripts are missing, or the database differs from the models."""


def migrations_dir() -> Path:
    """The Alembic script folder: ``$NFLAB_MIGRATIONS`` or ``<repo>/migrations`` next to ``platform/``."""
    override = os.environ.get("NFLAB_MIGRATIONS", "").strip()
    folder = Path(override) if override else Path(nflab.__file__).resolve().parents[2] / "migrations"
    if not (folder / "env.py").is_file():
        raise MigrationError(
            f"nflab's migration scripts were not found at {folder} (expected env.py there); "
            "run nflab from its source checkout (pip install -e .) or set NFLAB_MIGRATIONS to the migrations folder"
        )
    return folder


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at nflab's scripts and ``url`` (no ini file)."""
    cfg = Config(stdout=io.StringIO())
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head() -> str:
    """The newest revision id of the scripts."""
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    if len(heads) != 1:
        raise MigrationError(f"nflab migrations must have exactly one head, found {heads}")
    return heads[0]


def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` (default: the newest)."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Downgrade the database at ``url`` to ``revision`` ("base" removes nflab's tables)."""
    command.downgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    """The revision the database at ``url`` is stamped with (None for an empty database)."""
    connect_args = {"timeout": 30} if url.startswith("sqlite") else {}
    engine = create_engine(url, poolclass=pool.NullPool, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            return ctx.get_current_revision()
    finally:
        engine.dispose()


def check(url: str) -> None:
    """Raise ``MigrationError`` if the database is behind the scripts, or autogenerate finds a difference
    between ``db_models`` and the database (like ``alembic check``)."""
    try:
        command.check(alembic_config(url))
    except CommandError as exc:
        raise MigrationError(f"the database schema differs from nflab.db_models: {exc}") from exc
