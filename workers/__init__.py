"""nflab.workers — execution of runs: the training/eval loop, checkpoints, MLflow logging and Ray tasks.

Public API (imported lazily, so that ``import nflab.workers`` stays cheap for the CLI):
``execute_run(spec, ...) -> RunResult``, ``ensure_ray(address=None, *, num_cpus=None)``,
``run_specs(specs, ...)`` (one Ray task per run) and ``run_specs_inline(specs, ...)`` (sequential, in-process),
``node_capacities()`` (CPUs and GPUs of each alive Ray node),
``prepare_tracking(tracking_uri, experiment_name) -> experiment_id``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "execute_run": "execute",
    "ensure_ray": "ray_exec",
    "run_specs": "ray_exec",
    "run_specs_inline": "ray_exec",
    "node_capacities": "ray_exec",
    "prepare_tracking": "tracking",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
