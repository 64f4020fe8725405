"""Alembic environment for nflab's own tables (run programmatically by ``nflab.migrate``).

- The URL comes from the config's ``sqlalchemy.url`` (set by ``nflab.migrate``), or a live connection
  can be handed over in ``config.attributes["connection"]``.
- The version table is ``nflab_alembic_version``: MLflow and Optuna both use the default ``alembic_version``,
  so nflab never touches theirs even when pointed at a shared database.
- Only ``nflab_*`` tables are compared by autogenerate; foreign tables are ignored, never dropped.
- SQLite: batch mode ("move and copy"), with foreign keys switched off while migrating so that recreating a
  referenced table can neither fail nor cascade.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Connection

from nflab.db_models import Base

VERSION_TABLE = "nflab_alembic_version"
TABLE_PREFIX = "nflab_"

config = context.config
target_metadata = Base.metadata


def include_name(name: str | None, type_: str, parent_names: dict) -> bool:
    """Compare only nflab's tables (and everything inside them)."""
    if type_ == "table":
        return bool(name) and name.startswith(TABLE_PREFIX) and name != VERSION_TABLE
    return True


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        include_name=include_name,
        compare_type=True,
        **kwargs,
    )


def run_offline() -> None:
    """Emit SQL for the configured URL without connecting."""
    url = config.get_main_option("sqlalchemy.url")
    _configure(url=url, literal_binds=True, render_as_batch=str(url).startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection: Connection) -> None:
    is_sqlite = connection.dialect.name == "sqlite"
    if is_sqlite:
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    _configure(connection=connection, render_as_batch=is_sqlite)
    with context.begin_transaction():
        context.run_migrations()
    if is_sqlite:
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")


def run_online() -> None:
    """Migrate over a handed-over connection, or one opened from ``sqlalchemy.url``."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("nflab migrations: set sqlalchemy.url on the Alembic config (see nflab.migrate)")
    connect_args = {"timeout": 30} if url.startswith("sqlite") else {}
    engine = create_engine(url, poolclass=pool.NullPool, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            _run_on(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
