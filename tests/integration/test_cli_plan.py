"""Planning before paying: ``nflab run --dry-run`` (writes nothing), the campaign size limit (``NFLAB_MAX_RUNS``,
``--yes``) and ``nflab models FAMILY`` — against a real SQLite store, no mocks."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner, Result

from nflab.cli import app

PIPELINE = """\
name: plan-toy
dataset: {name: moons, test_samples: 500}
model: {family: realnvp, preset: small}
train: {steps: 40, seed: 0}
resources: {cpu: 1, gpu: 0}
matrix:
  model.family: [nice, realnvp, monotone]
  train.lr: [1.0e-3, 3.0e-3]
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in (
        "NFLAB_DB_URL",
        "MLFLOW_TRACKING_URI",
        "NFLAB_OPTUNA_URL",
        "NFLAB_DATA",
        "RAY_ADDRESS",
        "NFLAB_MAX_RUNS",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NFLAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")} if root.exists() else set()


def test_dry_run_prints_the_plan_and_writes_nothing(home: Path, tmp_path: Path) -> None:
    pipeline = tmp_path / "plan.yaml"
    pipeline.write_text(PIPELINE)
    before = _files(tmp_path)
    shown = _invoke("run", str(pipeline), "--dry-run")
    assert shown.exit_code == 0, shown.output
    assert "6 runs, 6 configurations" in shown.stdout and "nothing was written" in shown.stdout
    assert 'model.family="monotone", train.lr=0.003' in shown.stdout
    plan = json.loads(_invoke("run", str(pipeline), "--dry-run", "--json").stdout)
    assert plan["runs"] == 6 and plan["varying"] == ["model.family", "train.lr"] and plan["resumes"] is None
    assert {r["status"] for r in plan["plan"]} == {"new"} and all(len(r["config_hash"]) == 64 for r in plan["plan"])
    assert _files(tmp_path) == before and not home.exists()  # no store, no MLflow, no folder


def test_dry_run_shows_what_the_campaign_it_would_resume_finished(home: Path, tmp_path: Path) -> None:
    from nflab.campaign import prepare
    from nflab.settings import load_settings
    from nflab.store import Store

    pipeline = tmp_path / "plan.yaml"
    pipeline.write_text(PIPELINE)
    settings = load_settings()
    prepared = prepare(pipeline, [], settings)
    settings.ensure_dirs()
    with Store(settings.db_url) as store:
        cid = store.create_campaign(prepared.name, prepared.fingerprint, prepared.yaml_text)
        ids = store.add_runs(cid, prepared.specs)
        done = prepared.specs[0]["run_key"]
        store.set_run_status(ids[done], "finished")
    db = settings.db_url.removeprefix("sqlite:///")
    stamp = Path(db).stat().st_mtime_ns
    plan = json.loads(_invoke("run", str(pipeline), "--dry-run", "--json").stdout)
    assert plan["resumes"] == cid and plan["finished"] == 1
    assert {r["run_key"]: r["status"] for r in plan["plan"]}[done] == "finished"
    assert Path(db).stat().st_mtime_ns == stamp  # read only


def test_a_campaign_above_the_limit_is_refused_unless_confirmed(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NFLAB_MAX_RUNS", "5")
    pipeline = tmp_path / "plan.yaml"
    pipeline.write_text(PIPELINE)
    refused = _invoke("run", str(pipeline))
    assert refused.exit_code == 2
    assert "6 runs is more than the limit of 5 (NFLAB_MAX_RUNS)" in refused.output
    assert len(refused.output.strip().splitlines()) == 1 and not home.exists()
    counted = json.loads(_invoke("run", str(pipeline), "--dry-run", "--json").stdout)
    assert counted == {"pipeline": "plan-toy", "runs": 6, "limit": 5, "expanded": False}
    confirmed = json.loads(_invoke("run", str(pipeline), "--dry-run", "--yes", "--json").stdout)
    assert confirmed["runs"] == 6 and confirmed["expanded"] is True
    monkeypatch.setenv("NFLAB_MAX_RUNS", "lots")
    bad = _invoke("run", str(pipeline), "--dry-run")
    assert bad.exit_code == 2 and "NFLAB_MAX_RUNS" in bad.output and "a positive integer" in bad.output


def test_models_shows_exactly_a_familys_options_and_their_json_schema(home: Path) -> None:
    from nflab.pipelines import expand, load_pipeline_text

    table = _invoke("models", "resflow")
    assert table.exit_code == 0
    assert "cifar10" in table.stdout and "coeff" in table.stdout and "lipschitz [0.5, 0.99]" in table.stdout
    assert "dense_growth" not in table.stdout and "cpila_shift" in table.stdout
    schema = json.loads(_invoke("models", "monotone", "--json").stdout)
    assert schema["properties"]["coeff"]["exclusiveMaximum"] == 1 and "hidden" not in schema["properties"]
    (run,) = expand(load_pipeline_text("name: m\ndataset: {name: moons}\nmodel: {family: monotone}\n"))
    jsonschema.validate(run.config["model"], schema)  # a resolved model config is an instance of its schema
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**run.config["model"], "coeff": 1.5}, schema)
    unknown = _invoke("models", "monotne")
    assert unknown.exit_code == 2 and "'monotne' is not one of:" in unknown.output
