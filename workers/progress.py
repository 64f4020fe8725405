"""The progress mailbox: tasks post ("start" | "progress", run_key, step, total, metrics), the driver drains it.

It also carries the driver's stop requests back: a post answers whether the driver has asked that run to stop (a
pruned trial), so a task stops itself at its next post instead of being killed with its warm worker process.
Kept free of torch and MLflow imports so that its actor process starts in a fraction of a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import ray

MIN_INTERVAL_S = 1.0


class StopRequested(Exception):
    """Raised inside a run whose driver asked it to stop: the run ends KILLED and its worker process lives on."""


@ray.remote(num_cpus=0)
class ProgressActor:
    """A mailbox for progress events from tasks, and for the driver's stop requests to them."""

    def __init__(self) -> None:
        self._events: list[tuple[str, str, int, int, dict]] = []
        self._stop: set[str] = set()

    def report(self, kind: str, run_key: str, step: int, total: int, metrics: dict) -> bool:
        """Post an event; answers whether the driver has asked ``run_key`` to stop."""
        self._events.append((kind, run_key, step, total, metrics))
        return run_key in self._stop

    def stop(self, run_key: str) -> None:
        self._stop.add(run_key)

    def drain(self) -> list[tuple[str, str, int, int, dict]]:
        events, self._events = self._events, []
        return events


def throttled_reporter(mailbox: Any, interval_s: float = MIN_INTERVAL_S) -> Callable[[str, int, int, dict], None]:
    """A progress callback that posts at most once per ``interval_s`` (and always the final step)."""
    last = [0.0]

    def progress(key: str, step: int, total: int, metrics: dict) -> None:
        now = time.monotonic()
        if now - last[0] >= interval_s or step >= total:
            last[0] = now
            mailbox.report.remote("progress", key, step, total, metrics)

    return progress
