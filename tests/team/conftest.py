"""Team-mode fixtures: a throwaway PostgreSQL server for the session, a fresh empty database per test, and a real
Ray cluster in team mode per module (``team_cluster``).

The tests here are not deselected by a marker: they run in the default suite wherever PostgreSQL's binaries
are installed (scripts/ensure-postgres.sh) and skip with the reason otherwise.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy.engine import make_url

from tests.pg import PostgresServer, postgres_server, skip_reason
from tests.raycluster import RayCluster, ray_cluster

DB_PASSWORD = f"pg-secret-{uuid.uuid4().hex[:16]}"


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` (an external server's URL keeps its own, which is then the secret)."""
    parsed = make_url(url)
    return url if parsed.password else parsed.set(password=password).render_as_string(hide_password=False)


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


@pytest.fixture(scope="module")
def team_cluster(pg_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamCluster]:
    """A Ray head (``ray start --head`` on 127.0.0.1, token authentication on) whose environment is team mode:
    nflab's store in a fresh PostgreSQL database, MLflow in a SQLite file, one shared home folder. Jobs submitted
    to it inherit that environment, as on a real cluster; ``client_env`` gives a client the same settings."""
    shared = tmp_path_factory.mktemp("team-cluster")
    settings = {
        "NFLAB_HOME": str(shared / "home"),
        # a password the server does not ask for (trust authentication): a secret the tests look for everywhere
        "NFLAB_DB_URL": with_password(pg_server.create_database(), DB_PASSWORD),
        "MLFLOW_TRACKING_URI": f"sqlite:///{shared / 'mlflow.db'}",
    }
    with ray_cluster(env=settings) as cluster:
        yield TeamCluster(cluster, settings)


@dataclass
class TeamCluster:
    """The running cluster and the team-mode settings its nodes (and so its jobs) have."""

    ray: RayCluster
    settings: dict[str, str]

    def client_env(self, *, token: str = "file", **changes: str | None) -> dict[str, str]:
        """A client's environment: the cluster's settings and token (``file``, ``env`` or ``none``), no
        ``RAY_ADDRESS``; ``changes`` set (or, with None, remove) variables."""
        env = self.ray.client_env({**os.environ, **self.settings}, token=token)
        env.pop("RAY_ADDRESS", None)
        for key, value in changes.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env
