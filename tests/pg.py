"""A throwaway PostgreSQL server for tests, from Debian's binaries (scripts/ensure-postgres.sh installs them).

``postgres_server()`` runs ``initdb`` into a fresh temp folder, starts the server on a free 127.0.0.1 port
(unix socket in the same temp folder, fsync off, trust auth for the local superuser ``nflab``), yields a
``PostgresServer`` whose ``create_database()`` hands out empty databases, and stops and deletes it at the end.

PostgreSQL refuses to run as root. When the tests run as root, the server runs as the system user
``postgres`` (created by Debian's package) or, if that does not exist, ``nflabpg`` (created with
``useradd --system``); the commands are started with ``subprocess``'s ``user=``/``group=`` (no su/sudo needed)
and the temp folder is made under /tmp, owned by that user.

``NFLAB_TEST_PG_URL`` (a server URL, e.g. ``postgresql+psycopg://user:pw@host:5432/postgres``) uses an existing
server instead; the databases created there are dropped at the end.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.loopback import free_port as _free_port

SUPERUSER = "nflab"


def find_bindir() -> Path | None:
    """The folder holding initdb and pg_ctl (newest Debian version first), or None when not installed."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3].split(".")[0]), reverse=True
    )
    on_path = shutil.which("initdb")
    for initdb in [*candidates, *([on_path] if on_path else [])]:
        folder = Path(initdb).parent
        if (folder / "pg_ctl").exists():
            return folder
    return None


def skip_reason() -> str | None:
    """Why PostgreSQL tests cannot run here (None when they can)."""
    if os.environ.get("NFLAB_TEST_PG_URL"):
        return None
    if find_bindir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not installed; run scripts/ensure-postgres.sh as root"
    return None


def _service_user() -> pwd.struct_passwd | None:
    """None when not root; else the unprivileged account the server runs as (created if needed)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nflabpg"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "nflabpg"],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam("nflabpg")


@dataclass
class PostgresServer:
    """A running server: ``url`` points at its maintenance database ``postgres``."""

    url: str
    created: list[str] = field(default_factory=list)

    def _admin(self):  # psycopg connection in autocommit mode (CREATE/DROP DATABASE)
        import psycopg

        u = make_url(self.url)
        return psycopg.connect(
            host=u.host, port=u.port, user=u.username, password=u.password, dbname=u.database, autocommit=True
        )

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database and return its SQLAlchemy URL (``postgresql+psycopg://``)."""
        name = name or f"nflab_test_{uuid.uuid4().hex[:12]}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return make_url(self.url).set(drivername="postgresql+psycopg", database=name).render_as_string(False)

    def drop_created(self) -> None:
        """Drop every database this object created (used for external servers)."""
        with self._admin() as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a throwaway server (or use ``NFLAB_TEST_PG_URL``) and stop/remove it afterwards."""
    external = os.environ.get("NFLAB_TEST_PG_URL")
    if external:
        server = PostgresServer(url=make_url(external).set(drivername="postgresql+psycopg").render_as_string(False))
        try:
            yield server
        finally:
            server.drop_created()
        return
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError(skip_reason())
    user = _service_user()
    root = Path(tempfile.mkdtemp(prefix="nflab-pg-", dir="/tmp"))
    run_as = {} if user is None else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
    data, log = root / "data", root / "server.log"
    port = _free_port()
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    started = False
    try:
        subprocess.run(
            [bindir / "initdb", "-D", data, "-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
            env=env,
            cwd=root,
            **run_as,
        )
        options = (
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=100"
        )
        proc = subprocess.run(
            [bindir / "pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "-t", "60", "start"],
            capture_output=True,
            env=env,
            cwd=root,
            **run_as,
        )
        if proc.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {proc.stderr.decode(errors='replace')}\n{tail}")
        started = True
        yield PostgresServer(url=f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/postgres")
    finally:
        if started:
            subprocess.run(
                [bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"],
                capture_output=True,
                env=env,
                cwd=root,
                **run_as,
            )
        shutil.rmtree(root, ignore_errors=True)
