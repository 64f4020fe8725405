"""Team-mode fixtures: a throwaway PostgreSQL server for the session, a fresh empty database per test.

The tests here are not deselected by a marker: they run in the default suite wherever PostgreSQL's binaries
are installed (scripts/ensure-postgres.sh) and skip with the reason otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pg import PostgresServer, postgres_server, skip_reason


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole test session (skips when PostgreSQL is not installed)."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    with postgres_server() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    """The URL of a new, empty database on the session's server."""
    return pg_server.create_database()
