"""The driver's event ordering: on_start once and before on_result; nothing for a run after its result."""

from __future__ import annotations

from nflab.workers.ray_exec import RunEventRelay


def _relay(log: list[tuple]) -> RunEventRelay:
    return RunEventRelay(
        on_result=lambda key, res: log.append(("result", key, res["status"])),
        on_progress=lambda key, step, total, metrics: log.append(("progress", key, step)),
        on_start=lambda key: log.append(("start", key)),
    )


def test_late_start_of_a_finished_run_is_dropped() -> None:
    log: list[tuple] = []
    relay = _relay(log)
    relay.result("a", {"status": "failed"})  # the task returned before its "start" event arrived
    relay.events([("start", "a", 0, 0, {}), ("progress", "a", 1, 5, {})], running={"b"})
    assert log == [("start", "a"), ("result", "a", "failed")]


def test_start_once_latest_progress_only_and_result_last() -> None:
    log: list[tuple] = []
    relay = _relay(log)
    batch = [
        ("start", "a", 0, 0, {}),
        ("progress", "a", 1, 9, {}),
        ("start", "a", 0, 0, {}),
        ("progress", "a", 3, 9, {}),
    ]
    relay.events(batch, running={"a"})
    relay.result("a", {"status": "finished"})
    relay.events([("progress", "a", 9, 9, {})], running={"a"})  # even if the caller still lists it as running
    assert log == [("start", "a"), ("progress", "a", 3), ("result", "a", "finished")]


def test_events_of_runs_not_in_flight_are_ignored() -> None:
    log: list[tuple] = []
    _relay(log).events([("start", "zombie", 0, 0, {})], running={"a"})
    assert log == []


def test_a_retried_attempt_starts_the_run_again() -> None:
    log: list[tuple] = []
    relay = _relay(log)
    relay.events(
        [("start", "a", 0, 0, {"attempt": "n1:10"}), ("start", "a", 0, 0, {"attempt": "n1:10"})], running={"a"}
    )
    relay.events([("start", "a", 0, 0, {"attempt": "n2:20"})], running={"a"})  # Ray retried it on another node
    relay.result("a", {"status": "finished"})
    relay.events([("start", "a", 0, 0, {"attempt": "n3:30"})], running={"a"})  # after the result: dropped
    assert log == [("start", "a"), ("start", "a"), ("result", "a", "finished")]
