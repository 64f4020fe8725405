"""Helpers for the repro scheduling tests (SQLite and PostgreSQL): schedules with a stand-in pin, a check executor
that only writes a verdict (the scheduling rules do not need a campaign), and two daemons racing for due times."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from nflab import repro
from nflab.db_models import utcnow
from nflab.store import Store

PIN = {"version": 1, "specs": [{"config_hash": "f" * 64, "seed": 0}], "reference": [], "environment": {}}


def add(store: Store, name: str, anchor: datetime, cron: str = "0 * * * *", tz: str = "UTC", **kw: Any) -> int:
    """A schedule whose pin names one configuration, due times counted from ``anchor``."""
    return store.add_schedule(name, "p.yaml", cron=cron, timezone=tz, pin=kw.pop("pin", PIN), anchor_at=anchor, **kw)


def quick_check(pause_s: float = 0.0) -> repro.Execute:
    """An executor that waits ``pause_s`` (a check that takes time) and records ``reproduced``."""

    def execute(store: Store, _settings: Any, sched: Mapping[str, Any], check: Mapping[str, Any], **kw: Any) -> dict:
        time.sleep(pause_s)
        details = {"seconds": pause_s, **(kw.get("extra") or {})}
        store.finish_check(check["id"], status="reproduced", reason="stand-in", details=details, finished_at=utcnow())
        return next(c for c in store.list_repro_checks(sched["id"], limit=1000) if c["id"] == check["id"])

    return execute


def race(url: str, now: datetime, *, writers: int = 2, pause_s: float = 0.2) -> list[list[dict[str, Any]]]:
    """``writers`` daemons (each its own Store, so its own connections) tick at the same ``now`` at once; returns
    what each one ran."""
    barrier = threading.Barrier(writers)
    results: list[list[dict[str, Any]]] = [[] for _ in range(writers)]
    errors: list[BaseException] = []

    def one(i: int) -> None:
        with Store(url) as store:
            store.ensure_schema()
            barrier.wait()
            try:
                results[i] = repro.tick(store, None, now, execute=quick_check(pause_s))  # type: ignore[arg-type]
            except BaseException as exc:  # surfaced below
                errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results
