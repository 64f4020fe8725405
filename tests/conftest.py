"""Shared test settings: float64 correctness tests, a fixed torch seed per test, no GPU assumptions."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

_REPO = str(Path(__file__).resolve().parents[1])
if _REPO not in sys.path:
    sys.path.append(_REPO)  # test helpers import as tests.pg, tests.dbutil


@pytest.fixture(autouse=True)
def _seed_torch() -> Iterator[None]:
    """A fixed seed per test; a test that changes torch's default dtype cannot leak it into the next one."""
    torch.manual_seed(1234)
    dtype = torch.get_default_dtype()
    yield
    torch.set_default_dtype(dtype)


# Small tensors: one intra-op thread avoids OpenMP overhead and oversubscription (tests run beside Ray workers).
torch.set_num_threads(1)


@pytest.fixture
def float64() -> Iterator[None]:
    """float64 as torch's default dtype for one test (modules opt in: ``pytestmark = usefixtures("float64")``)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """A real local Ray with 2 CPUs for the whole session."""
    import ray

    from nflab.workers.ray_exec import ensure_ray

    started = not ray.is_initialized()
    ensure_ray(num_cpus=2)
    yield
    if started:
        ray.shutdown()
