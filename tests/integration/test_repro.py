"""``nflab repro`` end to end: a tiny pipeline run on a real local Ray, pinned, re-run and judged; real SQLite and
MLflow stores; a controllable clock (``now``) for due times."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from nflab import repro
from nflab.cli import app
from nflab.settings import load_settings
from nflab.store import Store

PIPELINE = """\
name: repro-toy
dataset: {name: checkerboard, test_samples: 200, validation_samples: 200}
model: {family: realnvp, preset: small}
train: {steps: 30, batch_size: 32, eval_every: 10, checkpoint_every: 30, log_every: 10, device: cpu, seed: 0}
eval: {batch_size: 200, samples: 200, average_last: 0}
resources: {cpu: 1, gpu: 0, retries: 0}
matrix:
  train.seed: [0, 1]
"""
ENV_VARS = ("NFLAB_DB_URL", "MLFLOW_TRACKING_URI", "NFLAB_OPTUNA_URL", "NFLAB_DATA", "RAY_ADDRESS", "NFLAB_STORAGE")


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def pinned(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> Iterator[dict[str, Any]]:
    """A finished two-seed campaign of the tiny pipeline and a schedule ``toy`` pinning it (daily, UTC)."""
    root = tmp_path_factory.mktemp("repro")
    with pytest.MonkeyPatch.context() as mp:
        for var in ENV_VARS:
            mp.delenv(var, raising=False)
        mp.setenv("NFLAB_HOME", str(root / "home"))
        pipeline = root / "toy.yaml"
        pipeline.write_text(PIPELINE)
        result = _invoke("run", str(pipeline), "--json")
        assert result.exit_code == 0, result.output
        added = _invoke("repro", "add", str(pipeline), "--cron", "@daily", "--name", "toy", "--json")
        assert added.exit_code == 0, added.output
        yield {"root": root, "pipeline": pipeline, "added": json.loads(added.stdout)}


@pytest.fixture
def store(pinned: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NFLAB_HOME", str(pinned["root"] / "home"))
    with Store(load_settings().db_url) as s:
        yield s


def _with_pin(store: Store, name: str, change: Any) -> str:
    """A copy of schedule ``toy`` named ``name`` whose pin ``change(pin)`` altered; returns the name."""
    sched = store.get_schedule("toy")
    pin = copy.deepcopy(sched["pin"])
    change(pin)
    store.add_schedule(name, sched["target"], cron=sched["cron"], target_kind=sched["target_kind"], pin=pin,
                       anchor_at=sched["anchor_at"])  # fmt: skip
    return name


def test_the_pin_holds_specs_seeds_references_code_environment_and_data(store: Store, pinned: dict) -> None:
    assert pinned["added"]["runs"] == 2 and pinned["added"]["configurations"] == 1
    pin = store.get_schedule("toy")["pin"]
    assert sorted(s["seed"] for s in pin["specs"]) == sorted(r["seed"] for r in pin["reference"])
    for ref in pin["reference"]:
        assert {"best nats", "final nats"} <= set(ref["metrics"])
        assert len(ref["best_sha256"]) == 64 and ref["data_digest"] and ref["device"] == "cpu"
    assert pin["code"]["version"] and "commit" in pin["code"]
    assert {"python", "torch", "numpy", "ray", "nflab", "torch_blas", "cpu", "deterministic_algorithms"} <= set(
        pin["environment"]
    )
    assert pin["data"]["checkerboard"]["kind"] == "synthetic"


def test_due_rerun_on_cpu_is_reproduced_by_the_exact_tier(store: Store, pinned: dict) -> None:
    sched = store.get_schedule("toy")
    settings = load_settings()
    due = repro.next_due(sched, sched["anchor_at"])  # @daily: the next midnight (an hour away at 23:00)
    assert due is not None
    assert repro.tick(store, settings, due - timedelta(minutes=1)) == []  # not due yet
    rows = repro.tick(store, settings, due + timedelta(hours=1))
    assert [r["status"] for r in rows] == ["reproduced"], rows
    assert rows[0]["details"]["tier"] == "exact" and rows[0]["trigger"] == "due"
    assert rows[0]["reason"].startswith("exact tier: 2 run(s) identical")

    # the re-run's runs never replace the pinned ones on the leaderboard, which shows the verdict
    board = _invoke("leaderboard", "--json", "--no-reference")
    assert board.exit_code == 0, board.output
    (row,) = json.loads(board.stdout)
    assert row["n_seeds"] == 2 and set(row["run_ids"]) == {r["run_id"] for r in sched["pin"]["reference"]}
    assert row["repro"].startswith("✔ reproduced 20")
    html = pinned["root"] / "board.html"
    assert _invoke("leaderboard", "--html", str(html)).exit_code == 0
    assert "✔ reproduced" in html.read_text()

    listed = json.loads(_invoke("repro", "list", "--json").stdout)
    toy = next(s for s in listed if s["name"] == "toy")
    assert toy["last_verdict"] == "reproduced" and toy["next_due"]
    shown = json.loads(_invoke("repro", "show", "toy", "--json").stdout)
    assert shown["checks"][0]["status"] == "reproduced" and shown["checks"][0]["details"]["seconds"] > 0
    for args in (["repro", "list"], ["repro", "show", "toy"], ["leaderboard", "--no-reference"]):
        text = _invoke(*args)
        assert text.exit_code == 0 and "reproduced" in text.stdout, text.output
    nothing = _invoke("repro", "run", "--due")  # the real clock: the daily schedule is not due yet
    assert nothing.exit_code == 0 and "nothing due" in nothing.stdout, nothing.output


def test_altered_reference_is_drift_with_the_numbers_and_exit_1(store: Store) -> None:
    def shift(pin: dict) -> None:
        for ref in pin["reference"]:
            ref["metrics"]["best nats"] += 0.125

    name = _with_pin(store, "toy-drift", shift)
    result = _invoke("repro", "run", name, "--json")
    assert result.exit_code == 1, result.output
    (row,) = json.loads(result.stdout)
    assert row["status"] == "drift" and row["details"]["tier"] == "exact"
    ref = store.get_schedule(name)["pin"]["reference"][0]
    assert repr(ref["metrics"]["best nats"]) in row["reason"]  # shown to the last digit
    assert row["details"]["worst"]["delta"] == pytest.approx(-0.125)
    assert repro.badge(row).startswith("✘ drift -0.12 nats (exact tier)")


def test_changed_environment_is_env_changed_with_the_diff_and_exit_1(store: Store) -> None:
    def older_torch(pin: dict) -> None:
        pin["environment"]["torch"] = "2.4.0"

    name = _with_pin(store, "toy-env", older_torch)
    result = _invoke("repro", "run", name, "--json")
    assert result.exit_code == 1, result.output
    (row,) = json.loads(result.stdout)
    assert row["status"] == "env-changed" and row["details"]["tier"] == "statistical"
    assert "torch: 2.4.0 → " in row["reason"] and row["details"]["environment_diff"]


def test_crashing_run_is_failed_with_its_reason_and_exit_1(store: Store) -> None:
    def break_data(pin: dict) -> None:
        pin["specs"][0]["config"]["dataset"]["name"] = "no-such-set"

    name = _with_pin(store, "toy-crash", break_data)
    result = _invoke("repro", "run", name, "--json")
    assert result.exit_code == 1, result.output
    (row,) = json.loads(result.stdout)
    assert row["status"] == "failed" and "no-such-set" in row["reason"], row["reason"]
    checks = store.list_repro_checks(store.get_schedule(name)["id"])
    assert [c["status"] for c in checks] == ["failed"] and checks[0]["campaign_id"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--cron", "61 * * * *"], "--cron: '61 * * * *' is not a cron expression"),
        (["--cron", "@fortnightly"], "--cron: '@fortnightly'"),
        (["--tz", "Mars/Olympus_Mons"], "--tz: 'Mars/Olympus_Mons' is no IANA timezone"),
    ],
)
def test_bad_cron_or_timezone_is_one_line_exit_2_nothing_written(
    store: Store, pinned: dict, args: list[str], fragment: str
) -> None:
    before = store.list_schedules()
    result = _invoke("repro", "add", str(pinned["pipeline"]), "--name", "bad", *args)
    assert result.exit_code == 2
    assert fragment in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert store.list_schedules() == before


def test_unknown_target_or_target_without_results_is_one_line_exit_2(
    store: Store, pinned: dict, tmp_path: Path
) -> None:
    before = store.list_schedules()
    unknown = _invoke("repro", "add", "deadbeef00", "--name", "bad")
    assert unknown.exit_code == 2 and "TARGET: 'deadbeef00' is no pipeline file" in unknown.output
    fresh = tmp_path / "never-run.yaml"
    fresh.write_text(PIPELINE.replace("repro-toy", "never-run"))
    never = _invoke("repro", "add", str(fresh), "--name", "bad")
    assert never.exit_code == 2 and "has no finished runs to pin" in never.output, never.output
    for result in (unknown, never):
        assert len(result.output.strip().splitlines()) == 1
    assert store.list_schedules() == before
    assert _invoke("repro", "run", "no-such-schedule").exit_code == 2
    neither = _invoke("repro", "run")
    assert neither.exit_code == 2 and "NAME: give a schedule name or --due" in neither.output


def test_add_by_config_hash_and_campaign_id(store: Store, pinned: dict) -> None:
    ref = store.get_schedule("toy")["pin"]["reference"][0]
    by_hash = _invoke("repro", "add", ref["config_hash"][:10], "--seeds", "1", "--json")
    assert by_hash.exit_code == 0, by_hash.output
    assert json.loads(by_hash.stdout)["runs"] == 1 and json.loads(by_hash.stdout)["target_kind"] == "config"
    too_many = _invoke("repro", "add", ref["config_hash"][:10], "--seeds", "5", "--name", "x")
    assert too_many.exit_code == 2 and "--seeds: 5" in too_many.output
    by_campaign = _invoke("repro", "add", ref["campaign_id"][:8], "--cron", "0 3 * * 1", "--tz", "Europe/Berlin",
                          "--json")  # fmt: skip
    assert by_campaign.exit_code == 0, by_campaign.output
    shown = json.loads(by_campaign.stdout)
    assert shown["target_kind"] == "campaign" and shown["runs"] == 2 and shown["timezone"] == "Europe/Berlin"
    assert _invoke("repro", "pause", shown["name"]).exit_code == 0
    assert not store.get_schedule(shown["name"])["enabled"]
    assert _invoke("repro", "resume", shown["name"]).exit_code == 0
    assert _invoke("repro", "remove", shown["name"]).exit_code == 0
