"""Shared test settings: float64 correctness tests, a fixed torch seed per test, no GPU assumptions."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    torch.manual_seed(1234)
