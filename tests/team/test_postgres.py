"""Team mode on a real PostgreSQL server: migrations up/down/up with rows, store round trip, concurrent writers.

Runs in the default suite wherever PostgreSQL's binaries are installed (see conftest.py); skipped otherwise.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from nflab import migrate
from nflab.db_models import TABLES
from nflab.leaderboard import leaderboard
from nflab.store import AmbiguousReferenceError, Store
from tests.dbutil import run_concurrently, same_rows_older_schema, snapshot, table_names

pytestmark = pytest.mark.timeout(300)


def _spec(i: int, seed: int = 0) -> dict[str, Any]:
    return {
        "run_key": f"cfg{i:02d}-r{seed}",
        "config_hash": f"{i:064x}",
        "seed": 2**40 + seed,  # BigInteger
        "repeat": seed,
        "config": {"dataset": {"name": "moons"}, "model": {"family": "monotone", "hidden": [128, 128]}},
    }


def _result(value: float, step: int = 10, budget: str = "exact") -> dict[str, Any]:
    return {
        "status": "finished",
        "mlflow_run_id": "m",
        "wall_s": 0.5,
        # selection as an up/down/up round trip re-derives it (downgrade drops the column)
        "results": [
            {
                "split": "test",
                "metric": "nats",
                "value": value,
                "budget": budget,
                "step": step,
                "kind": "best",
                "selection": "test-best",
            }
        ],
        "checkpoints": [{"step": step, "uri": f"file:///c/{step}", "sha256": "f" * 64}],
    }


def _populate(store: Store) -> str:
    cid = store.create_campaign("team", "fp", "name: team\n", mlflow_experiment_id="3")
    ids = store.add_runs(cid, [_spec(i) for i in range(3)], code_version="deadbeef")
    store.record_result(ids["cfg00-r0"], _result(2.4))
    study_campaign = store.create_campaign("tune-team", "fp-2", "name: tune-team\n")
    store.record_study("tune-team", study_campaign, objectives=["nats"], directions=["minimize"], sampler="tpe",
                       pruner="median", n_trials=4, counts={"complete": 1}, best=[])  # fmt: skip
    sid = store.add_schedule("weekly", "p.yaml", cron="0 0 * * 0", tolerance=0.02)
    store.add_repro_check(sid, "ok", {"delta": 0.001, "runs": [1, 2]}, campaign_id=cid)
    return cid


def test_migrations_up_down_up_keep_rows(pg_url: str) -> None:
    assert migrate.current(pg_url) is None
    with Store(pg_url) as store:
        _populate(store)
    assert migrate.current(pg_url) == migrate.head()
    migrate.check(pg_url)
    assert table_names(pg_url) == {*TABLES, "nflab_alembic_version"}
    before = snapshot(pg_url)
    assert all(before[t] for t in TABLES)
    migrate.downgrade(pg_url, "0001")
    assert migrate.current(pg_url) == "0001"
    older = snapshot(pg_url)
    assert set(before) - set(older) == {"nflab_studies"}  # tables added after 0001: their rows go with them
    assert same_rows_older_schema(before, older)
    migrate.upgrade(pg_url)
    assert snapshot(pg_url) == {**before, "nflab_studies": []}
    migrate.check(pg_url)


def test_shares_a_database_with_a_foreign_alembic_version(pg_url: str) -> None:
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('optuna_v3')"))
    migrate.upgrade(pg_url)
    migrate.check(pg_url)
    migrate.downgrade(pg_url, "base")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["optuna_v3"]
    engine.dispose()
    assert table_names(pg_url) == {"alembic_version", "nflab_alembic_version"}


def test_store_round_trip(pg_url: str) -> None:
    with Store(pg_url) as store:
        cid = _populate(store)
        again = store.add_runs(cid, [_spec(i) for i in range(3)])
        assert len(again) == 3 and store.campaign_summary(cid)["total"] == 3
        rid = again["cfg00-r0"]
        store.record_result(rid, _result(2.4))
        run = store.get_run(rid[:8])
        assert run["seed"] == 2**40 and run["config"]["model"]["hidden"] == [128, 128]
        assert [r["value"] for r in run["results"]] == [2.4] and len(run["checkpoints"]) == 1
        assert run["finished_at"].utcoffset().total_seconds() == 0
        assert store.get_campaign(cid[:6])["counts"]["finished"] == 1
        assert store.find_campaign_by_fingerprint("fp") == cid
        assert store.cancel_campaign(cid) == 2
        assert store.campaign_summary(cid)["cancelled"] == 2
        other = store.create_campaign("team2", "fp", "x")
        store.add_runs(other, [_spec(0)])
        with pytest.raises(AmbiguousReferenceError):
            store.get_run("cfg00-r0")
        rows = leaderboard(store, dataset="moons")
        ours = [r for r in rows if r.source == "ours"]
        assert len(ours) == 1 and ours[0].mean == 2.4 and ours[0].n_seeds == 1
        assert {r.label for r in rows if r.source == "paper"} == {"i-DenseNet", "Monotone Flow"}
        assert store.list_repro_checks()[0]["details"] == {"delta": 0.001, "runs": [1, 2]}


def test_concurrent_writers(pg_url: str) -> None:
    """Eight threads over two Store objects (two "processes"): distinct runs, and all of them on one run."""
    stores = [Store(pg_url), Store(pg_url)]
    try:
        cid = stores[0].create_campaign("conc", "fp", "x")
        ids = stores[0].add_runs(cid, [_spec(i) for i in range(8)])
        shared = ids["cfg00-r0"]
        errors: list[BaseException] = []
        barrier = threading.Barrier(8)

        def worker(i: int) -> None:
            store = stores[i % 2]
            try:
                barrier.wait()
                assert store.add_runs(cid, [_spec(j) for j in range(8)]) == ids
                store.mark_running(ids[f"cfg{i:02d}-r0"], attempt=1)
                for step in range(10):
                    store.record_result(ids[f"cfg{i:02d}-r0"], _result(i + step / 100, step=step, budget=f"b{step}"))
                    store.record_result(shared, _result(0.5, step=step, budget=f"b{step}"))  # same rows, 8 writers
            except BaseException as exc:
                errors.append(exc)

        run_concurrently(worker, [(i,) for i in range(8)])
        assert not errors, errors
        with stores[0].engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM nflab_runs")).scalar_one() == 8
            assert conn.execute(text("SELECT COUNT(*) FROM nflab_results")).scalar_one() == 8 * 10
            assert conn.execute(text("SELECT COUNT(*) FROM nflab_checkpoints")).scalar_one() == 8 * 10
        for i in range(1, 8):
            got = {r["budget"]: r["value"] for r in stores[1].get_run(ids[f"cfg{i:02d}-r0"])["results"]}
            assert got == {f"b{s}": pytest.approx(i + s / 100) for s in range(10)}
        # run 0 was written by its own thread and by every other thread with value 0.5; the last write wins
        assert len(stores[1].get_run(shared)["results"]) == 10
    finally:
        for s in stores:
            s.close()
