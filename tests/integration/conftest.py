"""Fixtures for the worker integration tests: a real local Ray (once per session), a real MLflow SQLite store
(created once per session; each test uses its own experiment), ``make_spec`` for tiny run specs, and a real
``ray start`` cluster per module that asks for it (``ray_head``)."""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.raycluster import RayCluster, ray_cluster

BASE_CONFIG: dict[str, Any] = {
    "dataset": {
        "name": "8gaussians",
        "test_samples": 2000,
        "validation_samples": None,
        "train_subset": None,
        "n_bins": None,
    },
    "model": {"family": "realnvp", "preset": "small"},
    "estimator": {"kind": "roulette", "n_exact_terms": 2, "dist": "geometric", "geom_p": 0.5, "eval_n_exact_terms": 20},
    "train": {
        "steps": 60,
        "batch_size": 128,
        "lr": 1e-3,
        "optimizer": "adam",
        "betas": [0.9, 0.999],
        "weight_decay": 0.0,
        "warmup_steps": 0,
        "grad_clip": None,
        "ema": None,
        "eval_every": 20,
        "checkpoint_every": 20,
        "log_every": 10,
        "seed": 0,
        "dtype": "float32",
        "device": "cpu",
    },
    "eval": {"batch_size": 1000, "exact": "auto", "samples": None, "best_metric": "nats", "average_last": 20},
    "resources": {"cpu": 1, "gpu": 0, "retries": 2},
}


def build_spec(run_key: str = "tiny-r0", *, seed: int = 7, **overrides: Any) -> dict[str, Any]:
    """A RunSpec dict; overrides use ``section__key=value`` (e.g. ``train__steps=200``, ``model__family="nice"``)."""
    config = copy.deepcopy(BASE_CONFIG)
    for name, value in overrides.items():
        section, _, key = name.partition("__")
        if not key:
            raise TypeError(f"override {name!r} must look like section__key")
        config[section][key] = value
    canon = json.dumps({**config, "train": {k: v for k, v in config["train"].items() if k != "seed"}}, sort_keys=True)
    return {
        "campaign": "worker-tests",
        "run_key": run_key,
        "config_hash": hashlib.sha256(canon.encode()).hexdigest(),
        "seed": seed,
        "repeat": 0,
        "overrides": {},
        "config": config,
    }


@pytest.fixture(name="make_spec")
def make_spec_fixture() -> Any:
    """``make_spec(run_key="tiny-r0", *, seed=7, **section__key overrides) -> RunSpec dict``."""
    return build_spec


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real MLflow SQLite store, its schema created once (as the platform does before starting workers)."""
    from nflab.workers.tracking import prepare_tracking

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    prepare_tracking(uri, "worker-tests-warmup")
    return uri


@pytest.fixture
def experiment() -> str:
    """A fresh experiment name per test."""
    return f"worker-tests-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path / "work"


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayCluster]:
    """A real ``ray start --head`` cluster on 127.0.0.1 (free ports, its own temp dir, token authentication on,
    2 CPUs) for the tests of one module; stopped, and only it, at the end (see tests/raycluster.py)."""
    with ray_cluster() as cluster:
        yield cluster
