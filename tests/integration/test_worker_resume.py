"""Resume after a crash: bit-identical to an uninterrupted run, same MLflow run, no duplicated metric steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from nflab.workers import execute_run
from nflab.workers.train import STOP_ENV, SimulatedCrash


def _run(spec: dict, workdir: Path, uri: str, experiment: str, run_id: str, **kw) -> dict:
    return execute_run(spec, workdir=workdir, tracking_uri=uri, experiment_name=experiment, nflab_run_id=run_id, **kw)


def _final_state(workdir: Path, run_key: str, step: int) -> dict:
    return torch.load(workdir / run_key / "checkpoints" / f"step_{step:08d}.pt", weights_only=False)


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_interrupted_run_resumes_bit_identically(make_spec, tmp_path, mlflow_uri, experiment, monkeypatch) -> None:
    spec = make_spec(
        "resume-r0",
        train__steps=60,
        train__eval_every=15,
        train__checkpoint_every=20,
        train__log_every=5,
        train__ema=0.95,
        train__grad_clip=5.0,
        train__warmup_steps=10,
        train__weight_decay=1e-5,
    )
    a = _run(spec, tmp_path / "a", mlflow_uri, experiment, "run-a")
    assert a["status"] == "finished", a["error"]

    with pytest.raises(SimulatedCrash):
        _run(spec, tmp_path / "b", mlflow_uri, experiment, "run-b", stop_after_step=30)
    first_id = (tmp_path / "b" / "resume-r0" / "run.json").read_text()
    b = _run(spec, tmp_path / "b", mlflow_uri, experiment, "run-b")
    assert b["status"] == "finished", b["error"]
    assert b["resumed_from"] == 20 and b["steps"] == 60
    assert b["results"] == a["results"]
    assert b["certificates"] == a["certificates"]
    assert b["mlflow_run_id"] in first_id

    sa, sb = _final_state(tmp_path / "a", "resume-r0", 60), _final_state(tmp_path / "b", "resume-r0", 60)
    for key, tensor in sa["model"].items():
        assert torch.equal(tensor, sb["model"][key]), key
    for key, tensor in sa["ema"]["shadow"].items():
        assert torch.equal(tensor, sb["ema"]["shadow"][key]), key
    assert sa["optimizer"]["state"].keys() == sb["optimizer"]["state"].keys()
    for idx, st in sa["optimizer"]["state"].items():
        assert all(torch.equal(v, sb["optimizer"]["state"][idx][k]) for k, v in st.items())

    client = MlflowClient(mlflow_uri)
    runs = client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id], "tags.`nflab.run_id` = 'run-b'"
    )
    assert [r.info.run_id for r in runs] == [b["mlflow_run_id"]]
    assert runs[0].info.status == "FINISHED"
    for key in ("train_loss", "test_nats", "lr"):
        hist_b = _history(client, b["mlflow_run_id"], key)
        steps = [s for s, _ in hist_b]
        assert len(steps) == len(set(steps)), f"duplicated steps in {key}"
        assert hist_b == _history(client, a["mlflow_run_id"], key)


def test_env_hook_and_finished_checkpoint_resume(make_spec, tmp_path, mlflow_uri, experiment, monkeypatch) -> None:
    spec = make_spec("env-r0", train__steps=20, train__checkpoint_every=10, train__eval_every=10)
    monkeypatch.setenv(STOP_ENV, "10")
    with pytest.raises(SimulatedCrash):
        _run(spec, tmp_path, mlflow_uri, experiment, "run-env")
    monkeypatch.delenv(STOP_ENV)
    done = _run(spec, tmp_path, mlflow_uri, experiment, "run-env")
    assert done["status"] == "finished" and done["resumed_from"] == 10
    again = _run(spec, tmp_path, mlflow_uri, experiment, "run-env")  # nothing left to train: same answers
    assert again["status"] == "finished" and again["resumed_from"] == 20
    assert again["results"] == done["results"] and again["mlflow_run_id"] == done["mlflow_run_id"]


@pytest.mark.parametrize(
    ("family", "estimator"),
    [("idensenet", "exact"), ("monotone", "exact"), ("resflow", "roulette")],
)
def test_solver_families_resume_bit_identically(
    family: str, estimator: str, make_spec, tmp_path, mlflow_uri, experiment
) -> None:
    """The E2 families (spectral-norm power iterations, Anderson solves, frozen mirrors) and a Russian-roulette
    estimator carry no state outside the checkpoint: a run interrupted and resumed ends bit for bit the same."""
    spec = make_spec(
        f"{family}-r0",
        model__family=family,
        estimator__kind=estimator,
        train__steps=24,
        train__batch_size=64,
        train__eval_every=8,
        train__checkpoint_every=8,
        train__weight_decay=1e-5,
        train__dtype="float64",
        eval__exact=True,
        dataset__test_samples=256,
        dataset__validation_samples=256,
    )
    a = _run(spec, tmp_path / "a", mlflow_uri, experiment, f"{family}-a")
    assert a["status"] == "finished", a["error"]
    with pytest.raises(SimulatedCrash):
        _run(spec, tmp_path / "b", mlflow_uri, experiment, f"{family}-b", stop_after_step=13)
    b = _run(spec, tmp_path / "b", mlflow_uri, experiment, f"{family}-b")
    assert b["status"] == "finished", b["error"]
    assert b["resumed_from"] == 8
    assert b["results"] == a["results"]
    sa, sb = _final_state(tmp_path / "a", f"{family}-r0", 24), _final_state(tmp_path / "b", f"{family}-r0", 24)
    for key, tensor in sa["model"].items():
        assert torch.equal(tensor, sb["model"][key]), key
