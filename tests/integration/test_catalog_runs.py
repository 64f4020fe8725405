"""Quick catalog variants run end to end through ``execute_run`` (real flows, a real MLflow SQLite store) at a tiny
budget: E3 on the embedded digits, E6 (a run kind of its own) with its plot and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nflab.pipelines import expand, load_pipeline
from nflab.store import dataset_label, family_label
from nflab.workers import execute_run

TINY_E3 = [
    "train.steps=2",
    "train.eval_every=2",
    "train.checkpoint_every=2",
    "train.warmup_steps=1",
    "dataset.test_samples=32",
    "dataset.validation_samples=32",
    "eval.samples=4",
]


def _run(spec: dict, workdir: Path, uri: str, experiment: str) -> dict:
    return execute_run(
        spec, workdir=workdir, tracking_uri=uri, experiment_name=experiment, nflab_run_id=f"id-{spec['run_key']}"
    )


def _e3_quick(families: set[str] | None) -> list[dict]:
    specs = [s.model_dump(mode="json") for s in expand(load_pipeline("e3-cifar10-quick", TINY_E3))]
    return [s for s in specs if families is None or s["config"]["model"]["family"] in families]


def _check_e3(result: dict) -> None:
    assert result["status"] == "finished", result["error"]
    bpd = [r for r in result["results"] if r["metric"] == "bpd" and r["split"] == "test" and r["kind"] == "best"]
    assert len(bpd) == 1 and 0 < bpd[0]["value"] < 20
    assert any(a.endswith("samples.png") for a in result["artifacts"])


def test_e3_quick_runs_end_to_end(workdir, mlflow_uri, experiment) -> None:
    """One configuration of the quick variant (Glow: Adamax, warm-up, Polyak averaging) through the whole run."""
    (spec,) = _e3_quick({"glow"})
    _check_e3(_run(spec, workdir, mlflow_uri, experiment))


@pytest.mark.slow
def test_e3_quick_runs_every_family(workdir, mlflow_uri, experiment) -> None:
    """Every configuration of e3-cifar10-quick (FFJORD, the Lipschitz families, VDQ, CIF) at two steps."""
    for spec in _e3_quick(None):
        _check_e3(_run(spec, workdir, mlflow_uri, experiment))


def test_e6_quick_writes_the_error_against_k(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_uri: str) -> None:
    """E6 end to end at a tiny budget: JSON and PNG written, the error falls with K, rows in the store and on the
    leaderboard (metric ``rel_error``, one row per K)."""
    from typer.testing import CliRunner

    from nflab.cli import app
    from nflab.store import Store

    settings = ("NFLAB_DB_URL", "MLFLOW_TRACKING_URI", "NFLAB_OPTUNA_URL", "NFLAB_DATA", "NFLAB_STORAGE", "RAY_ADDRESS")
    for var in settings:
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("NFLAB_HOME", str(home))
    overrides = ["coupling_linear.couplings=[1, 6]", "coupling_linear.maps=1", "train.steps=200", "train.eval_every=50"]
    (run,) = expand(load_pipeline("e6-coupling-linear-quick", overrides))
    spec = run.model_dump(mode="json")
    assert spec["config"]["kind"] == "coupling_linear" and "model" not in spec["config"]
    assert dataset_label(spec["config"]) == "linear-maps-8d" and family_label(spec["config"]) == "coupling_linear"
    with Store(f"sqlite:///{home / 'nflab.db'}") as store:
        campaign = store.create_campaign("e6-coupling-linear-quick", "fp", "")
        ids = store.add_runs(campaign, [spec])
        workdir = home / "runs" / campaign
        result = execute_run(
            spec, workdir=workdir, tracking_uri=mlflow_uri, experiment_name=f"e6-{campaign[:8]}",
            nflab_run_id=ids[spec["run_key"]],
        )  # fmt: skip
        assert result["status"] == "finished", result["error"]
        store.record_result(ids[spec["run_key"]], result)
    errors = {r["budget"]: r["value"] for r in result["results"] if r["metric"] == "rel_error"}
    assert set(errors) == {"couplings-1", "couplings-6"}
    assert errors["couplings-6"] < 0.2 * errors["couplings-1"]
    names = {Path(a).name for a in result["artifacts"]}
    assert {"coupling_linear.json", "coupling_linear.png"} <= names
    report = json.loads((workdir / spec["run_key"] / "analysis" / "coupling_linear.json").read_text())
    assert [row["couplings"] for row in report["summary"]] == [1, 6] and report["dim"] == 8
    args = ["leaderboard", "--metric", "rel_error", "--select", "final", "--json"]
    board = CliRunner().invoke(app, args, catch_exceptions=False)
    assert board.exit_code == 0, board.output
    rows = json.loads(board.stdout)
    assert {(r["dataset"], r["family"]) for r in rows} == {("linear-maps-8d", "coupling_linear")}


def test_ffjord_glow_quick_and_the_side_by_side_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_uri: str
) -> None:
    """The quick FFJORD-vs-Glow campaign (two sets, tiny budget) recorded in a real store; ``nflab compare`` writes one
    PNG with the families side by side."""
    from typer.testing import CliRunner

    from nflab.cli import app
    from nflab.store import Store

    settings = ("NFLAB_DB_URL", "MLFLOW_TRACKING_URI", "NFLAB_OPTUNA_URL", "NFLAB_DATA", "NFLAB_STORAGE", "RAY_ADDRESS")
    for var in settings:
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("NFLAB_HOME", str(home))
    overrides = [
        "train.steps=2",
        "train.eval_every=2",
        "train.checkpoint_every=2",
        "dataset.test_samples=100",
        "dataset.validation_samples=100",
        "eval.samples=200",
    ]
    pipeline = load_pipeline("ffjord-glow-toy-quick", overrides)
    specs = [s.model_dump(mode="json") for s in expand(pipeline)]
    assert len(specs) == 6
    specs = [s for s in specs if s["config"]["dataset"]["name"] != "8gaussians"]
    assert {(s["config"]["dataset"]["name"], s["config"]["model"]["family"]) for s in specs} == {
        (d, f) for d in ("checkerboard", "pinwheel") for f in ("ffjord", "glow")
    }
    with Store(f"sqlite:///{home / 'nflab.db'}") as store:
        campaign = store.create_campaign("ffjord-glow-toy-quick", "fp", "")
        ids = store.add_runs(campaign, specs)
        for spec in specs:
            result = execute_run(
                spec,
                workdir=home / "runs" / campaign,
                tracking_uri=mlflow_uri,
                experiment_name=f"ffjord-glow-{campaign[:8]}",
                nflab_run_id=ids[spec["run_key"]],
            )
            assert result["status"] == "finished", result["error"]
            assert any(a.endswith("density.png") for a in result["artifacts"])
            store.record_result(ids[spec["run_key"]], result)
            store.set_run_status(ids[spec["run_key"]], "finished")
    out = tmp_path / "grid.png"
    shown = CliRunner().invoke(app, ["compare", campaign, "--out", str(out)], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    assert out.is_file() and out.stat().st_size > 10_000
    assert not any((tmp_path / f".{out.stem}-tiles").glob("*.png"))


@pytest.mark.parametrize(("name", "expected"), [("e3-mnist", "mnist"), ("e3-imagenet64", "Imagenet64_train_npz")])
def test_e3_without_its_data_is_one_line_naming_the_path(
    name: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from nflab.cli import app

    monkeypatch.setenv("NFLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NFLAB_DATA", str(tmp_path / "data"))
    result = CliRunner().invoke(app, ["run", name, "--dry-run"])
    assert result.exit_code == 2
    message = result.output.strip()
    assert "\n" not in message.replace("\n ", " ") and "expected file" in message
    assert str(tmp_path / "data") in message.replace("\n", "") and expected in message.replace("\n", "")
