"""nflab.pipelines — what to run: the pipeline schema, loading with line-accurate errors, expansion.

``load_pipeline(path, overrides)`` reads and validates a YAML pipeline, ``expand(pipeline)`` turns it into
``RunSpec``s (each run's resolved config: see ``resolve``), and ``catalog/*.yaml`` ships the seed experiments.
"""

from __future__ import annotations

from pathlib import Path

from .errors import PipelineError
from .expand import campaign_fingerprint, expand, planned_runs
from .loader import (
    CATALOG,
    CampaignTooLarge,
    check_dataset_available,
    load_pipeline,
    load_pipeline_text,
    pipeline_path,
)
from .schema import Pipeline, RunConfig, RunSpec


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
