"""Selection reads the validation split only; the data stream depends on the seed (and dataset) only; every
reported number of a run refers to one checkpoint. Real flows, real MLflow, float64."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nflab.workers import checkpoint as ckpt
from nflab.workers import execute_run
from nflab.workers.certificates import PROBE_SIZE, compute_certificates
from nflab.workers.datasource import DataSource
from nflab.workers.tracking import Tracker
from nflab.workers.train import TrainState, build_model, train_run

SMALL = {
    "dataset__test_samples": 600,
    "dataset__validation_samples": 600,
    "train__steps": 60,
    "train__batch_size": 64,
    "train__lr": 5e-3,
    "train__eval_every": 10,
    "train__checkpoint_every": 30,
    "train__dtype": "float64",
    "eval__average_last": 3,
}


def _train(spec: dict, run_dir: Path, mlflow_uri: str, experiment: str, data: DataSource) -> TrainState:
    run_dir.mkdir(parents=True)
    tracker = Tracker.open(
        tracking_uri=mlflow_uri, experiment_name=experiment, spec=spec, nflab_run_id=spec["run_key"], run_dir=run_dir
    )
    state = train_run(spec, run_dir, tracker, TrainState(), data=data)
    tracker.finish("FINISHED")
    return state


def _data(spec: dict) -> DataSource:
    return DataSource(spec["config"]["dataset"], seed=spec["seed"], dtype=torch.float64, device=torch.device("cpu"))


def test_selection_never_reads_the_test_split(make_spec, tmp_path, mlflow_uri, experiment) -> None:
    """Poison the test split (points 40× farther out): the selected step, its validation value and its weights
    do not move; only the reported test numbers do."""
    spec = make_spec("poison-r0", **SMALL)
    clean = _train(spec, tmp_path / "clean", mlflow_uri, experiment, _data(spec))
    poisoned_data = _data(spec)
    poisoned_data.heldout = poisoned_data.heldout * 40.0
    poisoned = _train(spec, tmp_path / "poisoned", mlflow_uri, experiment, poisoned_data)

    assert poisoned.best["step"] == clean.best["step"]
    assert poisoned.best["validation"]["nats"] == clean.best["validation"]["nats"]
    assert poisoned.final["validation"]["nats"] == clean.final["validation"]["nats"]
    assert poisoned.best["test"]["nats"] > clean.best["test"]["nats"] + 20  # the poison is seen by the report ...
    best_clean = torch.load(ckpt.best_checkpoint(tmp_path / "clean" / "checkpoints").path, weights_only=False)
    best_poisoned = torch.load(ckpt.best_checkpoint(tmp_path / "poisoned" / "checkpoints").path, weights_only=False)
    for key, value in best_clean["model"].items():  # ... and by nothing else: the same weights were selected
        assert torch.equal(value, best_poisoned["model"][key]), key
    assert [ev["step"] for ev in clean.tail] == [40, 50, 60]  # the test split is read in the averaging window only


def test_the_same_seed_gives_the_same_data_stream_to_two_families(make_spec, workdir, mlflow_uri, experiment) -> None:
    common = {**SMALL, "train__steps": 20, "eval__average_last": 0}
    runs = {
        name: execute_run(
            make_spec(f"{name}-r0", seed=seed, model__family=family, **common),
            workdir=workdir,
            tracking_uri=mlflow_uri,
            experiment_name=experiment,
            nflab_run_id=name,
        )
        for name, family, seed in (("realnvp", "realnvp", 11), ("nice", "nice", 11), ("other", "realnvp", 12))
    }
    assert all(r["status"] == "finished" for r in runs.values()), {k: r["error"] for k, r in runs.items()}
    assert runs["realnvp"]["data_digest"] == runs["nice"]["data_digest"]  # batches, validation and test sets
    assert runs["other"]["data_digest"] != runs["realnvp"]["data_digest"]
    first, second = (_data(make_spec(seed=11, model__family=f, **common)) for f in ("realnvp", "nice"))
    assert torch.equal(first.heldout, second.heldout) and torch.equal(first.validation, second.validation)
    assert not torch.equal(first.heldout[:100], first.validation[:100])  # two independent held-out sets


def test_certificates_and_metrics_refer_to_the_selected_checkpoint(make_spec, workdir, mlflow_uri, experiment) -> None:
    spec = make_spec("cert-r0", seed=5, **SMALL)
    result = execute_run(spec, workdir=workdir, tracking_uri=mlflow_uri, experiment_name=experiment, nflab_run_id="c")
    assert result["status"] == "finished", result["error"]
    rows = {(r["metric"], r["split"], r["kind"]): r for r in result["results"]}
    best_step = rows["nats", "test", "best"]["step"]
    assert result["certificates_step"] == best_step == rows["nats", "validation", "best"]["step"]
    assert result["preset"] == "small" and result["n_params"] == sum(
        p.numel() for p in build_model(spec["config"]["model"], (2,)).parameters()
    )
    for name in ("inversion_error", "logdet_gap", "jacobian_condition", "jacobian_norm"):
        assert rows[name, "test", "best"]["step"] == best_step
        assert rows[name, "test", "best"]["value"] == result["certificates"][name]
    best = ckpt.best_checkpoint(workdir / "cert-r0" / "checkpoints")
    assert best is not None and best.step == best_step
    model = build_model(spec["config"]["model"], (2,)).double()
    model.load_state_dict(torch.load(best.path, weights_only=False)["model"])
    again = compute_certificates(model, _data(spec).heldout[:PROBE_SIZE])
    for name in ("inversion_error", "jacobian_condition", "jacobian_norm"):
        assert again[name] == pytest.approx(result["certificates"][name], rel=1e-9, abs=1e-12)
