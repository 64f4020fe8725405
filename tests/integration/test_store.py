"""The SQL store on a real SQLite file: idempotent writes, concurrent writers, lookups, cancel, schedules."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from nflab.store import AmbiguousReferenceError, Store, StoreLookupError
from tests.dbutil import run_concurrently


@pytest.fixture
def store(tmp_path: Path):
    with Store(f"sqlite:///{tmp_path / 'nflab.db'}") as s:
        yield s


def spec(i: int, seed: int = 0, family: str = "realnvp", dataset: str = "moons") -> dict[str, Any]:
    return {
        "campaign": "c",
        "run_key": f"cfg{i:02d}-r{seed}",
        "config_hash": f"{i:064x}",
        "seed": 1000 * i + seed,
        "repeat": seed,
        "overrides": {},
        "config": {"dataset": {"name": dataset}, "model": {"family": family}, "train": {"seed": seed}},
    }


def result(value: float, *, step: int = 100, budget: str = "exact", kind: str = "best") -> dict[str, Any]:
    return {
        "status": "finished",
        "error": None,
        "steps": step,
        "mlflow_run_id": "mlf-1",
        "results": [
            {"split": "test", "metric": "nats", "value": value, "budget": budget, "step": step, "kind": kind},
            {"split": "test", "metric": "bpd", "value": value / 2, "budget": budget, "step": step, "kind": kind},
        ],
        "checkpoints": [{"step": step, "uri": f"file:///ck/{step}.pt", "sha256": "0" * 64}],
        "wall_s": 3.25,
    }


def count(store: Store, table: str) -> int:
    with store.engine.connect() as conn:
        return conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()


def test_sqlite_runs_in_wal_with_foreign_keys(store: Store) -> None:
    store.list_campaigns()
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_add_runs_is_idempotent(store: Store) -> None:
    cid = store.create_campaign("c", "fp", "name: c")
    first = store.add_runs(cid, [spec(i) for i in range(4)], code_version="v1")
    store.mark_running(first["cfg00-r0"], attempt=2)
    again = store.add_runs(cid, [spec(i) for i in range(6)])
    assert {k: again[k] for k in first} == first
    assert len(again) == 6 and len(set(again.values())) == 6
    assert count(store, "nflab_runs") == 6
    run = store.get_run(first["cfg00-r0"])
    assert (run["status"], run["attempts"], run["code_version"]) == ("running", 2, "v1")
    assert (run["dataset"], run["family"], run["seed"]) == ("moons", "realnvp", 0)
    assert store.get_run("cfg05-r0")["status"] == "pending"
    with pytest.raises(ValueError, match="run_key"):
        store.add_runs(cid, [{"config_hash": "x", "seed": 1, "config": {}}])


def test_record_result_is_idempotent_and_upserts(store: Store) -> None:
    cid = store.create_campaign("c", "fp", "name: c")
    rid = store.add_runs(cid, [spec(1)])["cfg01-r0"]
    store.mark_running(rid)
    store.record_result(rid, result(2.5))
    store.record_result(rid, result(2.5))
    assert count(store, "nflab_results") == 2
    assert count(store, "nflab_checkpoints") == 1
    store.record_result(rid, result(2.25))  # same keys, new value: updated, not duplicated
    run = store.get_run(rid)
    assert count(store, "nflab_results") == 2
    assert {(r["metric"], r["value"]) for r in run["results"]} == {("nats", 2.25), ("bpd", 1.125)}
    assert (run["status"], run["mlflow_run_id"], run["wall_s"]) == ("finished", "mlf-1", 3.25)
    assert run["finished_at"].tzinfo == UTC
    assert run["checkpoints"][0]["uri"] == "file:///ck/100.pt"
    store.record_result(rid, result(2.0, budget="roulette-20"))  # another budget: a new row
    assert count(store, "nflab_results") == 4


def test_failed_result_keeps_reason(store: Store) -> None:
    cid = store.create_campaign("c", "fp", "name: c")
    rid = store.add_runs(cid, [spec(1)])["cfg01-r0"]
    store.record_result(rid, {"status": "failed", "error": "loss became nan at step 17", "results": []})
    run = store.get_run(rid)
    assert (run["status"], run["error"]) == ("failed", "loss became nan at step 17")
    with pytest.raises(StoreLookupError):
        store.record_result("no-such-run", result(1.0))


def test_eight_threads_record_at_once(store: Store) -> None:
    cid = store.create_campaign("c", "fp", "name: c")
    ids = store.add_runs(cid, [spec(i) for i in range(8)])
    n_steps, metrics = 10, ("nats", "bpd", "loss", "logdet_gap", "lipschitz")
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def expected(i: int, step: int, j: int) -> float:
        return i * 100.0 + step + j / 10.0

    def worker(i: int) -> None:
        try:
            rid = ids[f"cfg{i:02d}-r0"]
            barrier.wait()
            store.mark_running(rid, attempt=1)
            for step in range(n_steps):
                res = [
                    {"split": "test", "metric": m, "value": expected(i, step, j), "budget": f"s{step}", "step": step,
                     "kind": "last"}
                    for j, m in enumerate(metrics)
                ]  # fmt: skip
                store.record_result(rid, {"status": "finished", "results": res, "checkpoints": [
                    {"step": step, "uri": f"file:///{i}/{step}", "sha256": None}]})  # fmt: skip
                store.list_runs(cid)  # readers interleave with writers
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    run_concurrently(worker, [(i,) for i in range(8)])
    assert not errors, errors
    assert count(store, "nflab_results") == 8 * n_steps * len(metrics)
    assert count(store, "nflab_checkpoints") == 8 * n_steps
    for i in range(8):
        run = store.get_run(ids[f"cfg{i:02d}-r0"])
        got = {(r["metric"], r["step"]): r["value"] for r in run["results"]}
        want = {(m, s): expected(i, s, j) for s in range(n_steps) for j, m in enumerate(metrics)}
        assert got == want
        assert run["status"] == "finished"
    assert store.campaign_summary(cid)["finished"] == 8


def test_concurrent_add_runs_do_not_duplicate(store: Store) -> None:
    cid = store.create_campaign("c", "fp", "name: c")
    outs: list[dict[str, str]] = []
    barrier = threading.Barrier(6)

    def worker() -> None:
        barrier.wait()
        outs.append(store.add_runs(cid, [spec(i) for i in range(20)]))

    run_concurrently(worker, [()] * 6)
    assert len(outs) == 6 and all(o == outs[0] for o in outs)
    assert count(store, "nflab_runs") == 20


def test_lookup_by_prefix_and_run_key(store: Store) -> None:
    cids = [store.create_campaign(f"c{i}", f"fp{i % 2}", "x") for i in range(20)]
    target = cids[3]
    unique = next(n for n in range(4, 37) if sum(c.startswith(target[:n]) for c in cids) == 1)
    assert store.get_campaign(target[:unique])["name"] == "c3"
    first_chars = Counter(c[0] for c in cids)
    shared = next(ch for ch, n in first_chars.items() if n > 1)  # 20 ids over 16 hex digits: one repeats
    with pytest.raises(AmbiguousReferenceError):
        store.get_campaign(shared)
    with pytest.raises(StoreLookupError):
        store.get_campaign("zzzz")
    assert store.find_campaign_by_fingerprint("fp1") == cids[19]
    assert store.find_campaign_by_fingerprint("nope") is None

    a = store.add_runs(cids[0], [spec(1)])["cfg01-r0"]
    b = store.add_runs(cids[1], [spec(1)])["cfg01-r0"]
    assert store.get_run(a[:10])["id"] == a
    assert store.get_run("cfg01-r0", campaign_id=cids[1])["id"] == b
    assert store.get_run("cfg01-r0", campaign_id=cids[1])["campaign_name"] == "c1"
    with pytest.raises(AmbiguousReferenceError):
        store.get_run("cfg01-r0")  # the same key in two campaigns
    with pytest.raises(StoreLookupError):
        store.get_run("nothing-like-this")


def test_cancel_campaign(store: Store) -> None:
    cid = store.create_campaign("c", "fp", "name: c")
    ids = store.add_runs(cid, [spec(i) for i in range(4)])
    store.mark_running(ids["cfg01-r0"])
    store.mark_running(ids["cfg02-r0"])
    store.record_result(ids["cfg02-r0"], result(1.0))
    assert store.cancel_campaign(cid[:8]) == 3
    summary = store.campaign_summary(cid)
    assert (summary["cancelled"], summary["finished"], summary["total"]) == (3, 1, 4)
    camp = store.get_campaign(cid)
    assert camp["status"] == "cancelled" and camp["counts"] == summary
    assert [r["run_key"] for r in store.list_runs(cid, status="cancelled")] == ["cfg00-r0", "cfg01-r0", "cfg03-r0"]
    assert store.list_runs(cid, status=["finished"], with_results=True)[0]["results"]


def test_campaign_fields(store: Store) -> None:
    cid = store.create_campaign("c", "fp", "name: c\n", mlflow_experiment_id=12)
    store.set_submission_id(cid, "raysubmit_abc")
    store.set_campaign_status(cid, "running")
    camp = store.get_campaign(cid)
    assert (camp["submission_id"], camp["status"], camp["mlflow_experiment_id"]) == ("raysubmit_abc", "running", "12")
    assert camp["pipeline_yaml"] == "name: c\n"
    assert camp["created_at"].tzinfo == UTC
    listed = store.list_campaigns(limit=5)
    assert [c["id"] for c in listed] == [cid] and "pipeline_yaml" not in listed[0]


def test_schedules_and_repro_checks(store: Store) -> None:
    sid = store.add_schedule(
        "nightly", "pipelines/catalog/e2.yaml", cron="0 3 * * *", code_version="abc", tolerance=0.1
    )
    store.add_schedule("hourly", "p.yaml", every_s=3600, enabled=False)
    with pytest.raises(ValueError):
        store.add_schedule("nightly", "other.yaml", every_s=5)
    with pytest.raises(ValueError):
        store.add_schedule("both", "p.yaml", cron="* * * * *", every_s=5)
    assert [s["name"] for s in store.list_schedules()] == ["hourly", "nightly"]
    assert [s["name"] for s in store.list_schedules(enabled_only=True)] == ["nightly"]
    store.update_schedule("hourly", enabled=True, every_s=60)
    assert store.get_schedule("hourly")["every_s"] == 60
    store.mark_schedule_run(sid)
    assert store.get_schedule(sid)["last_run_at"].tzinfo == UTC
    c1 = store.add_repro_check(sid, "ok", {"delta": 0.01})
    c2 = store.add_repro_check(sid, "drift", {"delta": 0.5})
    assert [c["id"] for c in store.list_repro_checks(sid)] == [c2, c1]
    assert store.list_repro_checks(sid)[0]["details"] == {"delta": 0.5}
    store.delete_schedule("nightly")
    assert store.list_repro_checks() == []
    with pytest.raises(StoreLookupError):
        store.get_schedule("nightly")


def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(ValueError, match="SQLite file"):
        Store("sqlite://")
