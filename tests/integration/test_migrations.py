"""Alembic migrations on real SQLite files: upgrade from empty, up/down/up keeps every row, no drift,
nflab's own version table next to a foreign ``alembic_version``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from nflab import migrate
from nflab.db_models import TABLES
from nflab.store import Store
from tests.dbutil import same_rows_older_schema, snapshot, table_names


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'nflab.db'}"


def populate(store: Store) -> None:
    """At least one row in every nflab table."""
    cid = store.create_campaign("mig", "fp-1", "name: mig\n", mlflow_experiment_id="7")
    specs = [
        {"run_key": f"k{i}-r0", "config_hash": f"h{i}", "seed": 100 + i, "repeat": 0,
         "config": {"dataset": {"name": "moons"}, "model": {"family": "realnvp", "n": i}}}
        for i in range(3)
    ]  # fmt: skip
    ids = store.add_runs(cid, specs, code_version="abc123")
    store.record_result(
        ids["k0-r0"],
        {
            "status": "finished",
            "mlflow_run_id": "m0",
            "wall_s": 1.5,
            # selection and quantity as an up/down/up round trip re-derives them (downgrade drops those columns)
            "results": [
                {
                    "split": "test",
                    "metric": "nats",
                    "value": 2.41,
                    "budget": "exact",
                    "step": 9,
                    "kind": "best",
                    "selection": "test-best",
                    "quantity": "exact",
                }
            ],
            "checkpoints": [{"step": 9, "uri": "file:///tmp/c9.pt", "sha256": "ab" * 32}],
        },
    )
    study_campaign = store.create_campaign("tune-mig", "fp-2", "name: tune-mig\n")
    best = [{"number": 0, "values": [2.4], "params": {"train.lr": 0.001}}]
    store.record_study("tune-mig", study_campaign, objectives=["nats"], directions=["minimize"], sampler="tpe",
                       pruner="median", n_trials=4, counts={"complete": 1}, best=best)  # fmt: skip
    sid = store.add_schedule("nightly", "pipelines/catalog/x.yaml", every_s=86400, tolerance=0.05)
    store.add_repro_check(sid, "ok", {"delta": 0.01}, campaign_id=cid)


def index_names(url: str, table: str) -> set[str]:
    engine = create_engine(url)
    try:
        return {ix["name"] for ix in inspect(engine).get_indexes(table)}
    finally:
        engine.dispose()


def test_upgrade_from_empty_creates_every_table(tmp_path: Path) -> None:
    url = _url(tmp_path)
    assert migrate.current(url) is None
    migrate.upgrade(url)
    assert migrate.current(url) == migrate.head() == "0007"
    assert table_names(url) == {*TABLES, "nflab_alembic_version"}
    assert "alembic_version" not in table_names(url)
    migrate.check(url)


def test_store_migrates_on_first_use(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'dir' / 'nflab.db'}"
    with Store(url) as store:
        assert store.list_campaigns() == []
    assert migrate.current(url) == migrate.head()


def test_down_and_up_keeps_every_row(tmp_path: Path) -> None:
    url = _url(tmp_path)
    with Store(url) as store:
        populate(store)
    before = snapshot(url)
    assert all(before[t] for t in TABLES), "every table must hold a row for this test to mean something"
    assert "ix_nflab_runs_status" in index_names(url, "nflab_runs")

    migrate.downgrade(url, "0001")
    assert migrate.current(url) == "0001"
    assert "ix_nflab_runs_status" not in index_names(url, "nflab_runs")
    older = snapshot(url)
    assert set(before) - set(older) == {"nflab_studies"}  # tables added after 0001: their rows go with them
    assert same_rows_older_schema(before, older)

    migrate.upgrade(url)
    assert migrate.current(url) == migrate.head()
    assert "ix_nflab_runs_status" in index_names(url, "nflab_runs")
    assert "ix_nflab_results_metric_split_kind" in index_names(url, "nflab_results")
    assert "ix_nflab_results_split_kind_metric_run" in index_names(url, "nflab_results")
    assert "ix_nflab_runs_campaign_status" in index_names(url, "nflab_runs")
    # a study's summary row is re-written by the next `nflab tune` of it (Optuna's storage holds the study)
    assert snapshot(url) == {**before, "nflab_studies": []}
    migrate.check(url)


def test_check_reports_drift(tmp_path: Path) -> None:
    url = _url(tmp_path)
    migrate.upgrade(url, "0001")
    with pytest.raises(migrate.MigrationError):
        migrate.check(url)  # behind head
    migrate.upgrade(url)
    migrate.check(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE nflab_campaigns ADD COLUMN stray INTEGER"))
    engine.dispose()
    with pytest.raises(migrate.MigrationError, match="differs"):
        migrate.check(url)


def test_foreign_alembic_version_is_untouched(tmp_path: Path) -> None:
    """MLflow/Optuna keep their stamp in ``alembic_version``; nflab neither reads, writes nor drops it."""
    url = _url(tmp_path)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('mlflow_rev_1')"))
        conn.execute(text("CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY, name TEXT)"))
    migrate.upgrade(url)
    migrate.check(url)  # foreign tables are not reported as drift
    migrate.downgrade(url, "base")
    assert table_names(url) == {"alembic_version", "experiments", "nflab_alembic_version"}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["mlflow_rev_1"]
    engine.dispose()
    assert migrate.current(url) is None


def test_missing_migrations_folder_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NFLAB_MIGRATIONS", str(tmp_path / "nowhere"))
    with pytest.raises(migrate.MigrationError, match="migration scripts were not found"):
        migrate.upgrade(_url(tmp_path))


def test_step_and_best_checkpoint_at_one_step_are_two_rows(tmp_path: Path) -> None:
    """0003: a step file and the best file at the same step are both kept (0002 kept one of them)."""
    url = _url(tmp_path)
    migrate.upgrade(url, "0002")
    engine = create_engine(url)
    with engine.begin() as conn:  # a store written by 0002: one best file recorded at step 10
        conn.execute(
            text("INSERT INTO nflab_campaigns VALUES ('c', 'n', 'fp', 'y', '2026-01-01', 'finished', NULL, NULL)")
        )
        conn.execute(
            text(
                "INSERT INTO nflab_runs (id, campaign_id, run_key, status, config, config_hash, seed, repeat, attempts,"
                " created_at) VALUES ('r', 'c', 'k', 'finished', '{}', 'h', 1, 0, 1, '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO nflab_checkpoints (run_id, step, uri, sha256, created_at) VALUES "
                "('r', 10, 'file:///x/checkpoints/best_step_00000010.pt', NULL, '2026-01-01'),"
                "('r', 20, 'file:///x/checkpoints/step_00000020.pt', NULL, '2026-01-01')"
            )
        )
    engine.dispose()
    with Store(url) as store:
        kinds = {(c["step"], c["kind"]) for c in store.get_run("r")["checkpoints"]}
        assert kinds == {(10, "best"), (20, "step")}
        store.record_result(
            "r",
            {
                "status": "finished",
                "checkpoints": [
                    {"step": 10, "kind": "step", "uri": "file:///x/checkpoints/step_00000010.pt"},
                    {"step": 10, "kind": "best", "uri": "file:///x/checkpoints/best_step_00000010.pt"},
                ],
            },
        )
        rows = store.get_run("r")["checkpoints"]
    assert sorted((c["step"], c["kind"], c["uri"].rsplit("/", 1)[1]) for c in rows) == [
        (10, "best", "best_step_00000010.pt"),
        (10, "step", "step_00000010.pt"),
        (20, "step", "step_00000020.pt"),
    ]
    migrate.downgrade(url, "0002")
    kept = sorted((r[2], r[3].rsplit("/", 1)[1]) for r in snapshot(url)["nflab_checkpoints"])
    assert kept == [(10, "step_00000010.pt"), (20, "step_00000020.pt")]  # the best duplicate of step 10 went


def test_a_store_written_at_0003_shows_the_same_rows_with_derived_kinds(tmp_path: Path) -> None:
    """0004: old rows keep their values; what they are is derived from budget, family and config (zero padding's
    number was a joint density recorded as budget exact), and their selection is the old test-set rule."""
    from nflab.leaderboard import leaderboard

    url = _url(tmp_path)
    migrate.upgrade(url, "0003")
    configs = {
        "plain": ("realnvp", {"dataset": {"name": "moons"}, "model": {"family": "realnvp"}}, "exact", 2.41),
        "zero": ("realnvp", {"dataset": {"name": "moons"}, "model": {"family": "realnvp", "padding": 2,
                 "padding_kind": "zero"}}, "exact", -11.3),
        "gauss": ("realnvp", {"dataset": {"name": "moons"}, "model": {"family": "realnvp", "padding": 2,
                  "padding_kind": "gaussian"}}, "exact", 2.63),
        "cif": ("cif", {"dataset": {"name": "moons"}, "model": {"family": "cif", "base": "realnvp"}}, "iwae-100", 2.5),
        "rr": ("resflow", {"dataset": {"name": "moons"}, "model": {"family": "resflow"}}, "rr-20", 2.45),
        "series": ("iresnet", {"dataset": {"name": "moons"}, "model": {"family": "iresnet"}}, "series-5", 2.47),
    }  # fmt: skip
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO nflab_campaigns VALUES ('c', 'old', 'fp', 'y', '2026-01-01', 'finished', "
                          "NULL, NULL, NULL, NULL)"))  # fmt: skip
        for i, (key, (family, config, budget, value)) in enumerate(configs.items()):
            conn.execute(
                text(
                    "INSERT INTO nflab_runs (id, campaign_id, run_key, status, config, config_hash, seed, repeat,"
                    " dataset, family, attempts, created_at) VALUES (:id, 'c', :key, 'finished', :config, :hash, 1, 0,"
                    " 'moons', :family, 1, '2026-01-01')"
                ),
                {"id": key, "key": key, "config": json.dumps(config), "hash": f"{i:064x}", "family": family},
            )
            for kind, v in (("best", value), ("final", value + 0.1)):
                conn.execute(
                    text(
                        "INSERT INTO nflab_results (run_id, split, metric, value, budget, step, kind, created_at)"
                        " VALUES (:run, 'test', 'nats', :v, :budget, 100, :kind, '2026-01-01')"
                    ),
                    {"run": key, "v": v, "budget": budget, "kind": kind},
                )
    engine.dispose()
    with Store(url) as store:
        rows = {r.family + ("/" + r.note if r.note else ""): r for r in leaderboard(store, include_reference=False)}
        assert migrate.current(url) == migrate.head()
        quantities = {store.get_run(k)["results"][0]["quantity"] for k in configs}
        selections = {r["selection"] for k in configs for r in store.get_run(k)["results"]}
    assert selections == {"test-best", "final"}
    assert quantities == {"exact", "joint", "bound", "unbiased", "biased"}
    got = sorted((r.mean, r.quantity, r.selection) for r in rows.values())  # 0005 recomputed the config hashes
    expected_kind = {"plain": "exact", "zero": "joint", "gauss": "bound", "cif": "bound", "rr": "unbiased",
                     "series": "biased"}  # fmt: skip
    assert got == sorted((value, expected_kind[key], "test-best") for key, (_, _, _, value) in configs.items())


def test_downgrade_keeps_the_new_rows(tmp_path: Path) -> None:
    """A last-N average (kind mean, new in 0004) survives a downgrade as kind last, which 0003 allows."""
    url = _url(tmp_path)
    with Store(url) as store:
        cid = store.create_campaign("m", "fp", "name: m")
        rid = store.add_runs(cid, [{"run_key": "k", "config_hash": "h", "seed": 1, "config": {}}])["k"]
        store.record_result(
            rid,
            {
                "status": "finished",
                "n_params": 10,
                "results": [
                    {"split": "test", "metric": "nats", "value": 2.5, "budget": "exact", "step": 9, "kind": "mean",
                     "selection": "last-20-mean", "quantity": "exact", "n_samples": 100},
                ],
            },
        )  # fmt: skip
    before = snapshot(url)
    migrate.downgrade(url, "0003")
    after = snapshot(url)
    assert len(after["nflab_results"]) == 1 and after["nflab_results"][0][7] == "last"
    assert [r[:7] for r in after["nflab_results"]] == [r[:7] for r in before["nflab_results"]]
    migrate.upgrade(url)
    migrate.check(url)


DATA = Path(__file__).parent / "data"


def test_a_store_written_by_the_previous_version_shows_the_same_leaderboard(tmp_path: Path) -> None:
    """0005 on a real store: ``store_0004.db`` was written by ``nflab run store_0004_pipeline.yaml`` with the code
    before the one configuration language (commit 4f86e6e: monotone, resflow with an explicit estimator, FFJORD with
    the old ``divergence`` option, realnvp; an ``estimator`` section; two seeds), and ``store_0004_leaderboard.json``
    is that version's ``nflab leaderboard --json``. After the migration every row is there with the same numbers,
    the seeds of each configuration still share one (new) hash, and that hash is the one this version resolves for
    the same runs written in today's names."""
    import shutil

    from nflab.leaderboard import leaderboard, to_json
    from nflab.pipelines import expand, load_pipeline_text

    db = tmp_path / "nflab.db"
    shutil.copy(DATA / "store_0004.db", db)
    url = f"sqlite:///{db}"
    assert migrate.current(url) == "0004"
    before = [r for r in json.loads((DATA / "store_0004_leaderboard.json").read_text()) if r["source"] != "paper"]
    with Store(url) as store:
        after = [r for r in to_json(leaderboard(store)) if r["source"] != "paper"]
        runs = store.list_runs(store.list_campaigns()[0]["id"])
    assert migrate.current(url) == migrate.head()

    def numbers(rows: list[dict]) -> list[tuple]:
        return sorted((r["dataset"], r["family"], r["mean"], r["std"], r["n_seeds"], r["quantity"]) for r in rows)

    assert numbers(after) == numbers(before) and len(before) == 4
    assert len({r["config_hash"] for r in after}) == 4 and not {r["config_hash"] for r in before} & {
        r["config_hash"] for r in after
    }
    # resflow's own `estimator: roulette` and FFJORD's `divergence: hutchinson` were overridden by the section's
    # `kind: exact` at run time (the section won then; a model's own option wins now): the runs they describe are
    # written without them
    today = (DATA / "store_0004_pipeline.yaml").read_text().replace(", divergence: hutchinson}", "}")
    today = today.replace(", estimator: roulette}", "}")
    fresh = {s.config["model"]["family"]: s.config_hash for s in expand(load_pipeline_text(today))}
    stored = {r["family"]: r["config_hash"] for r in runs}
    assert stored == fresh
