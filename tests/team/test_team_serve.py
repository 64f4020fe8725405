"""``nflab serve`` on PostgreSQL (team mode): the same pages and JSON as on SQLite, the JSON equal to the
leaderboard functions behind ``nflab leaderboard --json``, hostile strings escaped, a change shown within seconds."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from starlette.testclient import TestClient

from nflab.leaderboard import leaderboard, to_json
from nflab.serve import create_app
from nflab.settings import load_settings
from nflab.store import Store

SCRIPT = "<script>alert(1)</script>"


def _fill(store: Store) -> tuple[str, str]:
    cid = store.create_campaign(SCRIPT, "fp", "name: x", status="finished")
    specs = []
    for family, h in (("nice", "a" * 64), ("maf", "b" * 64)):
        config = {"dataset": {"name": "moons"}, "model": {"family": family, "note": 'say "hi"'}}
        specs += [{"run_key": f"{family}-r{s}", "config_hash": h, "seed": s, "config": config} for s in range(3)]
    ids = store.add_runs(cid, specs)
    for i, rid in enumerate(ids.values()):
        result = {"split": "test", "metric": "nats", "value": 2.0 + i / 10, "budget": "exact", "kind": "best"}
        store.record_result(rid, {"status": "finished", "results": [result]})
    return cid, "a" * 64


def test_serve_on_postgres(pg_url: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("NFLAB_HOME", str(tmp_path / "home"))
    for var in ("NFLAB_DB_URL", "MLFLOW_TRACKING_URI", "NFLAB_OPTUNA_URL", "NFLAB_STORAGE"):
        monkeypatch.delenv(var, raising=False)
    settings = replace(load_settings(), db_url=pg_url)
    with Store(pg_url) as store:
        campaign, config = _fill(store)
        client = TestClient(create_app(settings, store))
        for url in ("/", f"/configs/{config}", "/campaigns", f"/campaigns/{campaign}", "/studies", "/api/facets"):
            response = client.get(url)
            assert response.status_code == 200, url
            assert "<script>alert" not in response.text, url
        assert client.get("/api/leaderboard").json() == to_json(leaderboard(store))
        assert client.get("/api/leaderboard?dataset=moons&reference=no").json() == to_json(
            leaderboard(store, dataset="moons", include_reference=False)
        )
        assert "say &#34;hi&#34;" in client.get(f"/configs/{config}").text
        assert client.get("/api/leaderboard?dataset=moons' OR 1=1 --").status_code == 400

        before = len(client.get("/api/leaderboard?reference=no").json())
        late = store.create_campaign("late", "fp2", "name: late", status="finished")
        spec = {"run_key": "r0", "config_hash": "c" * 64, "seed": 0,
                "config": {"dataset": {"name": "moons"}, "model": {"family": "realnvp"}}}  # fmt: skip
        rid = store.add_runs(late, [spec])["r0"]
        result = {"split": "test", "metric": "nats", "value": 1.0, "budget": "exact", "kind": "best"}
        store.record_result(rid, {"status": "finished", "results": [result]})
        deadline = time.monotonic() + 30
        while len(client.get("/api/leaderboard?reference=no").json()) == before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(client.get("/api/leaderboard?reference=no").json()) == before + 1
        client.close()
