"""What every analysis shares: its options (schema defaults filled in), what it hands back to ``execute_run``, and
where its files go (``<run folder>/analysis/``, logged as MLflow artifacts under ``analysis/``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..tracking import Tracker

ARTIFACT_PATH = "analysis"


@dataclass
class AnalysisOutcome:
    """Result rows for the store (e.g. metric ``mse``) and the files written (logged under ``analysis/``)."""

    results: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[Path] = field(default_factory=list)


def analysis_options(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec's resolved ``analysis`` section (its kind and that kind's options; a run config lists none for
    kind ``none``)."""
    return spec["config"].get("analysis") or {"kind": "none"}


def analysis_dir(run_dir: Path) -> Path:
    """``<run_dir>/analysis``, created."""
    folder = run_dir / ARTIFACT_PATH
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_json(path: Path, data: Any) -> Path:
    """Pretty, key-sorted JSON (finite floats only: NaN and inf are written as null)."""
    path.write_text(json.dumps(_finite(data), indent=2, sort_keys=True))
    return path


def log_files(tracker: Tracker, paths: list[Path]) -> None:
    """Log ``paths`` as MLflow artifacts under ``analysis/``."""
    for path in paths:
        tracker.log_artifact(path, ARTIFACT_PATH)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
