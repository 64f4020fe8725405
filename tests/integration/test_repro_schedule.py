"""Repro scheduling rules on a real SQLite store with a controllable clock: due times from cron and timezone,
catch-up runs once, overlap is skipped and recorded, abandoned checks are closed, two daemons racing for one due
time write one check, the daemon survives database errors (back-off) and is stopped by SIGTERM (a real process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from nflab import repro
from nflab.store import Store
from tests.reprosched import add, quick_check, race

T0 = datetime(2026, 12, 1, 0, 0, 30, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(f"sqlite:///{tmp_path / 'nflab.db'}") as s:
        yield s


def _tick(store: Store, now: datetime) -> list[dict]:
    return repro.tick(store, None, now, execute=quick_check())  # type: ignore[arg-type]


def test_cron_nicknames_and_timezones() -> None:
    assert repro.normalize_cron("@weekly") == "0 0 * * 0"
    assert repro.normalize_cron(" 0  3 * * 1 ") == "0 3 * * 1"
    sched = {"cron": "0 3 * * *", "timezone": "Europe/Berlin", "created_at": T0, "anchor_at": T0}
    assert repro.next_due(sched, T0) == datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # 03:00 CET
    summer = datetime(2026, 7, 1, tzinfo=UTC)
    assert repro.next_due(sched, summer) == datetime(2026, 7, 1, 1, 0, tzinfo=UTC)  # 03:00 CEST
    for bad in ("* * * *", "0 0 31 2 *", "@reboot", "*/0 * * * *"):
        with pytest.raises(repro.ReproError, match="--cron"):
            repro.normalize_cron(bad)
    with pytest.raises(repro.ReproError, match="--tz"):
        repro.zone("Europe/Atlantis")


def test_latest_due_after_a_long_gap_and_across_a_dst_change() -> None:
    minutely = {"cron": "* * * * *", "timezone": "UTC", "created_at": T0, "anchor_at": T0}
    now = T0 + timedelta(days=365, seconds=15)
    latest, count = repro.latest_due(minutely, T0, now)
    assert latest == (T0 + timedelta(days=365)).replace(second=0) and count == 10_000  # counted up to the limit
    berlin = {"cron": "30 2 * * *", "timezone": "Europe/Berlin", "created_at": T0, "anchor_at": T0}
    before = datetime(2026, 3, 28, 12, tzinfo=UTC)  # 02:30 does not exist on 2026-03-29 (clocks go 02:00 → 03:00)
    latest, count = repro.latest_due(berlin, before, datetime(2026, 3, 29, 12, tzinfo=UTC))
    assert count == 1 and latest is not None and latest.date() == datetime(2026, 3, 29).date()
    assert repro.latest_due(berlin, latest, datetime(2026, 3, 29, 23, tzinfo=UTC)) == (None, 0)


def test_catch_up_after_missed_due_times_runs_once(store: Store) -> None:
    sid = add(store, "hourly", T0)
    assert _tick(store, T0 + timedelta(minutes=50)) == []
    (row,) = _tick(store, T0 + timedelta(hours=5, minutes=30))  # 01:00 … 05:00 missed: one check, for 05:00
    assert row["due_at"] == datetime(2026, 12, 1, 5, tzinfo=UTC) and row["details"]["missed"] == 4
    assert _tick(store, T0 + timedelta(hours=5, minutes=45)) == []
    (nxt,) = _tick(store, datetime(2026, 12, 1, 6, 0, 1, tzinfo=UTC))
    assert nxt["due_at"] == datetime(2026, 12, 1, 6, tzinfo=UTC) and "missed" not in nxt["details"]
    assert len(store.list_repro_checks(sid)) == 2


def test_overlap_is_skipped_and_recorded(store: Store) -> None:
    sid = add(store, "hourly", T0)
    running = store.claim_check(sid, None, trigger="manual", host=repro.host_name(), pid=os.getpid())
    assert running is not None and running["status"] == "running"
    (skipped,) = _tick(store, T0 + timedelta(hours=1))
    assert skipped["status"] == "skipped" and f"check {running['id']}" in skipped["reason"]
    assert skipped["due_at"] == datetime(2026, 12, 1, 1, tzinfo=UTC)
    store.finish_check(running["id"], status="reproduced", reason="done")
    (ran,) = _tick(store, T0 + timedelta(hours=2))
    assert ran["status"] == "reproduced"
    assert [c["status"] for c in store.list_repro_checks(sid)] == ["reproduced", "skipped", "reproduced"]


def test_a_check_whose_process_died_is_closed_as_abandoned(store: Store) -> None:
    sid = add(store, "hourly", T0)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = store.claim_check(sid, None, trigger="manual", host=repro.host_name(), pid=gone.pid)
    (ran,) = _tick(store, T0 + timedelta(hours=1))
    assert ran["status"] == "reproduced"
    old = next(c for c in store.list_repro_checks(sid) if c["id"] == dead["id"])
    assert old["status"] == "failed" and f"process {gone.pid}" in old["reason"]


def test_one_due_time_one_claim(store: Store) -> None:
    sid = add(store, "hourly", T0)
    due = datetime(2026, 12, 1, 1, tzinfo=UTC)
    first = store.claim_check(sid, due, trigger="due", host="a", pid=1)
    assert first is not None
    assert store.claim_check(sid, due, trigger="due", host="b", pid=2) is None
    assert len(store.list_repro_checks(sid)) == 1


def test_two_daemons_racing_write_one_check_per_due_time(store: Store) -> None:
    sid = add(store, "hourly", T0)
    for hour in range(1, 6):
        ran = race(store.url, T0 + timedelta(hours=hour, minutes=1))
        assert sorted(len(r) for r in ran) == [0, 1], ran
    checks = store.list_repro_checks(sid)
    assert len(checks) == 5 and len({c["due_at"] for c in checks}) == 5
    assert {c["status"] for c in checks} == {"reproduced"}


def test_daemon_backs_off_while_the_database_is_unreachable(store: Store) -> None:
    add(store, "hourly", T0)
    failures = {"left": 2}
    real = store.list_schedules

    def flaky(**kw: object) -> list[dict]:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise OperationalError("SELECT", {}, Exception("connection refused"))
        return real(**kw)

    store.list_schedules = flaky  # type: ignore[method-assign]
    lines: list[str] = []
    stop = threading.Event()
    clock = {"now": T0 + timedelta(hours=1, minutes=1)}

    def log(line: str) -> None:
        lines.append(line)
        if any("reproduced" in x for x in lines):
            stop.set()

    thread = threading.Thread(
        target=repro.run_daemon,
        args=(store, None, stop),
        kwargs={"poll_s": 0.05, "log": log, "now": lambda: clock["now"], "execute": quick_check(),
                "backoff_s": (0.05, 0.2)},
    )  # fmt: skip
    thread.start()
    thread.join(timeout=30)
    stop.set()
    assert not thread.is_alive()
    unreachable = [x for x in lines if x.startswith("database unreachable")]
    assert len(unreachable) == 2 and "retrying in 0.05 s" in unreachable[0] and "retrying in 0.1 s" in unreachable[1]
    assert any("check 1 reproduced" in x for x in lines), lines


def _wait_for(predicate, timeout: float = 90.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


def test_daemon_survives_failing_checks_and_stops_on_sigterm(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NFLAB_", "MLFLOW_", "RAY_ADDRESS"))}
    env["NFLAB_HOME"] = str(home)
    url = f"sqlite:///{home / 'nflab.db'}"
    now = datetime.now(UTC)
    with Store(url) as store:
        add(store, "no-pin", now - timedelta(minutes=2), cron="* * * * *", pin=None)
        add(store, "broken-pin", now - timedelta(minutes=2), cron="* * * * *", pin={"specs": 42})
    nflab = Path(sys.executable).with_name("nflab")
    log = tmp_path / "daemon.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(nflab), "repro", "daemon", "--poll", "0.5"], env=env, stdout=out, stderr=out)
    try:
        with Store(url) as store:

            def statuses() -> dict[str, list[str]]:
                out = {}
                for s in store.list_schedules():
                    out[s["name"]] = [c["status"] for c in store.list_repro_checks(s["id"])]
                return out

            assert _wait_for(lambda: statuses().get("no-pin") == ["failed"] and statuses()["broken-pin"] == ["failed"])
            assert proc.poll() is None, log.read_text()  # still running after two failing checks
            add(store, "later", datetime.now(UTC) - timedelta(minutes=2), cron="* * * * *", pin=None)
            assert _wait_for(lambda: statuses().get("later") == ["failed"]), log.read_text()
            reasons = {c["reason"] for c in store.list_repro_checks()}
            assert any("has no pin" in r for r in reasons) and any("TypeError" in r for r in reasons)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "repro daemon started" in text and "repro daemon stopped" in text, text
    assert "Traceback" not in text
