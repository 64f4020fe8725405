"""nflab.pipelines — what to run: the pipeline schema, loading with line-accurate errors, expansion.

``load_pipeline(path, overrides)`` reads and validates a YAML pipeline, ``expand(pipeline)`` turns it into
``RunSpec``s (each run's resolved config: see ``resolve``), and ``catalog/*.yaml`` ships the seed experiments.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import PipelineError
    from .expansion import campaign_fingerprint, expand, planned_runs
    from .loader import CampaignTooLarge, check_dataset_available, load_pipeline, load_pipeline_text, pipeline_path
    from .schema import Pipeline, RunConfig, RunSpec

CATALOG = Path(__file__).parent / "catalog"

#: public names and their modules, imported on first use: the schema imports the flow family (torch), and the
#: read-only commands (status, leaderboard, tune list) that only need ``errors`` should not pay for it. No public
#: name may be a submodule's name: importing the submodule would bind the package attribute to the module
_LAZY = {
    "PipelineError": "errors",
    "campaign_fingerprint": "expansion",
    "expand": "expansion",
    "planned_runs": "expansion",
    "CampaignTooLarge": "loader",
    "check_dataset_available": "loader",
    "load_pipeline": "loader",
    "load_pipeline_text": "loader",
    "pipeline_path": "loader",
    "Pipeline": "schema",
    "RunConfig": "schema",
    "RunSpec": "schema",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def catalog_path(name: str) -> Path:
    """Path of the catalog pipeline ``name`` (with or without ``.yaml``); ``ValueError`` if unknown."""
    path = CATALOG / (name if name.endswith(".yaml") else f"{name}.yaml")
    if not path.is_file():
        raise ValueError(f"no catalog pipeline {name!r}; available: {', '.join(list_catalog())}")
    return path


def list_catalog() -> list[str]:
    """Names of the catalog pipelines (file stems), sorted."""
    return sorted(p.stem for p in CATALOG.glob("*.yaml"))


__all__ = [
    "CATALOG",
    "CampaignTooLarge",
    "Pipeline",
    "PipelineError",
    "RunConfig",
    "RunSpec",
    "campaign_fingerprint",
    "catalog_path",
    "check_dataset_available",
    "expand",
    "list_catalog",
    "load_pipeline",
    "load_pipeline_text",
    "pipeline_path",
    "planned_runs",
]
