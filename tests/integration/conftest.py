"""Fixtures for the worker integration tests: a real local Ray (once per session), a real MLflow SQLite store
(created once per session; each test uses its own experiment), ``make_spec`` for tiny run specs, and a real
``ray start`` cluster per module that asks for it (``ray_head``)."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.raycluster import RayCluster, ray_cluster

BASE_CONFIG: dict[str, Any] = {
    "dataset": {"name": "8gaussians", "test_samples": 2000},
    "model": {"family": "realnvp", "preset": "small"},
    "train": {"steps": 60, "batch_size": 128, "eval_every": 20, "checkpoint_every": 20, "log_every": 10,
              "device": "cpu"},
    "eval": {"batch_size": 1000},
    "resources": {"cpu": 1, "gpu": 0, "retries": 2},
}  # fmt: skip


def build_spec(run_key: str = "tiny-r0", *, seed: int = 7, **overrides: Any) -> dict[str, Any]:
    """A resolved RunSpec dict (what ``expand`` gives the worker); overrides use ``section__key=value`` (e.g.
    ``train__steps=200``, ``model__family="nice"``) or a whole section (``analysis={...}``, ``model={...}``)."""
    from nflab.pipelines.hashing import config_hash
    from nflab.pipelines.resolve import resolve_run

    raw = copy.deepcopy(BASE_CONFIG)
    for name, value in overrides.items():
        section, _, key = name.partition("__")
        if key:
            raw.setdefault(section, {})[key] = value
        else:
            raw[section] = copy.deepcopy(value)
    config = resolve_run(raw)
    return {
        "campaign": "worker-tests",
        "run_key": run_key,
        "config_hash": config_hash(config),
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
