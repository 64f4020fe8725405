"""Repro scheduling on a real PostgreSQL server: two daemons racing for the same due times write exactly one check
each, and a daemon that loses its database (connections refused, then allowed again) backs off and goes on.

Runs in the default suite wherever PostgreSQL's binaries are installed (see conftest.py); skipped otherwise.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from nflab import repro
from nflab.store import Store
from tests.pg import PostgresServer
from tests.reprosched import add, quick_check, race

pytestmark = pytest.mark.timeout(300)
T0 = datetime(2026, 12, 1, 0, 0, 30, tzinfo=UTC)


def test_two_daemons_racing_on_postgres_write_one_check_per_due_time(pg_url: str) -> None:
    with Store(pg_url) as store:
        sid = add(store, "hourly", T0)
        due = datetime(2026, 12, 1, 1, tzinfo=UTC)
        assert store.claim_check(sid, due, trigger="due", host="a", pid=1) is not None
        assert store.claim_check(sid, due, trigger="due", host="b", pid=2) is None  # the unique pair decides
        for hour in range(2, 7):
            ran = race(pg_url, T0 + timedelta(hours=hour, minutes=1), writers=3)
            assert sorted(len(r) for r in ran) == [0, 0, 1], ran
        checks = store.list_repro_checks(sid)
        assert len(checks) == 6 and len({c["due_at"] for c in checks}) == 6


def _allow_connections(server: PostgresServer, url: str, allowed: bool) -> None:
    name = make_url(url).database
    admin = create_engine(server.url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}'))
            if not allowed:
                conn.execute(
                    text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name}
                )
    finally:
        admin.dispose()


def test_daemon_survives_a_lost_postgres_connection(pg_server: PostgresServer, pg_url: str) -> None:
    with Store(pg_url) as setup:
        sid = add(setup, "hourly", T0)
    store = Store(pg_url)
    store.ensure_schema()
    clock = {"now": T0 + timedelta(minutes=5)}
    lines: list[str] = []
    stop = threading.Event()
    lost = threading.Event()

    def log(line: str) -> None:
        lines.append(line)
        if line.startswith("database unreachable"):
            lost.set()
        if "reproduced" in line:
            stop.set()

    thread = threading.Thread(
        target=repro.run_daemon,
        args=(store, None, stop),
        kwargs={"poll_s": 0.1, "log": log, "now": lambda: clock["now"], "execute": quick_check(),
                "backoff_s": (0.1, 0.4)},
    )  # fmt: skip
    thread.start()
    try:
        _allow_connections(pg_server, pg_url, False)
        assert lost.wait(30), lines
        clock["now"] = T0 + timedelta(hours=1, minutes=1)  # a due time passes while the database is away
        _allow_connections(pg_server, pg_url, True)
        thread.join(timeout=60)
        assert not thread.is_alive(), lines
    finally:
        stop.set()
        thread.join(timeout=10)
        store.close()
    with Store(pg_url) as check:
        (row,) = check.list_repro_checks(sid)
    assert row["status"] == "reproduced" and row["due_at"] == datetime(2026, 12, 1, 1, tzinfo=UTC)
    assert any("retrying in 0.1 s" in x for x in lines)
