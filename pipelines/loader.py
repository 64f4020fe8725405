"""Load a pipeline from YAML (file or text), apply ``--set`` overrides and validate every run.

Every problem raises :class:`PipelineError` with a one-line message ``file:line path: problem``. Loading
also expands the matrix once, so that a model option made invalid by one combination is reported at load
time. Data files are never read here; see :func:`check_dataset_available`.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from nflab.flows.data import DatasetFileError, DatasetFormatError, load_images

from . import CATALOG
from .describe import from_validation_error
from .errors import Invalid, PipelineError, format_path
from .expansion import expand, planned_runs
from .locate import Locator
from .matrix import check_path
from .schema import Pipeline
from .yaml_lines import YamlSyntaxError, parse_scalar, parse_with_lines

TOP_LEVEL_SETTABLE = ("name", "repeats")


class CampaignTooLarge(PipelineError):
    """A campaign of more runs than allowed (``planned``: how many), refused before it is expanded."""

    def __init__(self, where: str, planned: int, limit: int, pipeline: Pipeline) -> None:
        self.planned, self.limit, self.pipeline = planned, limit, pipeline
        problem = (
            f"{planned:,} runs is more than the limit of {limit:,} (NFLAB_MAX_RUNS); "
            "plan it with --dry-run, or confirm with --yes"
        )
        super().__init__(where, "matrix", problem)


def load_pipeline(
    path: str | os.PathLike[str], overrides: Sequence[str] = (), *, max_runs: int | None = None
) -> Pipeline:
    """Load the pipeline at ``path`` (or a catalog name such as ``e2-toy-quick``) with ``--set`` overrides.

    ``max_runs``: refuse (:class:`CampaignTooLarge`) a campaign of more runs, counted before expanding it."""
    file = pipeline_path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        names = ", ".join(sorted(p.stem for p in CATALOG.glob("*.yaml")))
        raise PipelineError(str(path), "", f"no such pipeline file (catalog pipelines: {names})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(str(path), "", f"cannot read the file: {exc}") from None
    return load_pipeline_text(text, file.name, overrides, max_runs=max_runs)


def pipeline_path(path: str | os.PathLike[str]) -> Path:
    """``path`` itself, or the catalog file when ``path`` is not a file but a catalog name (``e2-toy``)."""
    file = Path(path)
    if not file.is_file() and (CATALOG / f"{path}.yaml").is_file():
        return CATALOG / f"{path}.yaml"
    return file


def load_pipeline_text(
    text: str, filename: str = "<string>", overrides: Sequence[str] = (), *, max_runs: int | None = None
) -> Pipeline:
    """Parse and validate pipeline YAML ``text`` (and every run it expands to); ``filename`` is what error messages
    call it; ``max_runs`` as in :func:`load_pipeline`."""
    try:
        data, lines = parse_with_lines(text)
    except YamlSyntaxError as exc:
        where = f"{filename}:{exc.line}" if exc.line else filename
        raise PipelineError(where, "", f"YAML syntax error: {exc.problem}") from None
    except Invalid as exc:
        raise Locator(filename).error(exc) from None
    locator = Locator(filename, lines)
    if not isinstance(data, dict):
        shown = "an empty file" if data is None else f"a {type(data).__name__}"
        raise PipelineError(f"{filename}:{lines[()]}", "", f"the top level must be a mapping of fields, not {shown}")
    data, set_values = apply_overrides(data, overrides, locator)
    try:
        pipeline = Pipeline.model_validate(data)
    except ValidationError as exc:
        raise locator.error(from_validation_error(exc, data, Pipeline)) from None
    pipeline._locator = locator
    pipeline._overrides = set_values
    pipeline._source = text
    planned = planned_runs(pipeline)
    if max_runs is not None and planned > max_runs:
        raise CampaignTooLarge(locator.where(("matrix",)) if pipeline.matrix else filename, planned, max_runs, pipeline)
    expand(pipeline)
    if pipeline.tune is not None:
        from .tune_space import check_trial_params, search_space

        check_trial_params(pipeline, search_space(pipeline))
    return pipeline


def apply_overrides(
    data: dict[str, Any], overrides: Sequence[str], locator: Locator
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Apply ``path=value`` strings to a copy of ``data``; a matrix axis is replaced by the single value.

    Returns the new data and ``{path: value}`` of the section overrides; records each path's ``--set``
    text in ``locator.sets`` so that errors name the option.
    """
    data = copy.deepcopy(data)
    section_values: dict[str, Any] = {}
    for text in overrides:
        where = f"--set {text}:"
        path, sep, raw = text.partition("=")
        path = path.strip()
        if not sep or not path:
            raise PipelineError(where, "", "expected dotted.path=value")
        try:
            value = parse_scalar(raw)
        except YamlSyntaxError as exc:
            raise PipelineError(where, path, f"{raw!r} is not a YAML value: {exc.problem}") from None
        loc = tuple(path.split("."))
        matrix = data.get("matrix")
        if isinstance(matrix, dict) and path in matrix:
            matrix[path] = [value]
            locator.sets[("matrix", path)] = text
        elif path in TOP_LEVEL_SETTABLE:
            data[path] = value
        elif loc[0] == "tune" and len(loc) > 1:  # tune.trials=8, tune.sampler.seed=3
            node = data.setdefault("tune", {})
            for part in loc[1:-1]:
                node = node.setdefault(part, {}) if isinstance(node, dict) else node
            if not isinstance(node, dict):
                raise PipelineError(where, path, "cannot set a field of a value that is not a mapping")
            node[loc[-1]] = value
        else:
            try:
                check_path(path, loc)
            except Invalid as exc:
                raise PipelineError(where, path, exc.problem) from None
            section = data.setdefault(loc[0], {})
            if not isinstance(section, dict):
                raise PipelineError(where, path, f"cannot set a field of {loc[0]}: it is not a mapping")
            if len(loc) == 1:
                if not isinstance(value, dict):
                    raise PipelineError(where, path, f"{value!r} is not a mapping of {path} fields")
                section.update(value)
            else:
                section[loc[1]] = value
            section_values[path] = value
        locator.sets[loc] = text
    return data, section_values


def check_dataset_available(pipeline: Pipeline, data_root: str | os.PathLike[str] | None = None) -> None:
    """Raise :class:`PipelineError` if an image dataset of any run is missing under ``data_root``.

    Toy sets and ``digits`` (embedded) are always available. This reads the train and test files of each
    other image dataset once, so call it before submitting, not during validation.
    """
    locator: Locator = pipeline._locator or Locator()
    seen: set[str] = set()
    for run in expand(pipeline):  # expanded once, at load
        name = run.config["dataset"]["name"]
        if name in seen or run.config["dataset"]["n_bins"] is None or name == "digits":
            continue
        seen.add(name)
        for split in ("train", "test"):
            try:
                load_images(name, split, root=data_root)
            except (DatasetFileError, DatasetFormatError) as exc:
                loc = ("dataset", "name")
                axis = next(((i, v) for i, v in enumerate(pipeline.matrix.get("dataset.name", [])) if v == name), None)
                where = locator.where(loc, {"dataset.name": axis} if axis else None)
                raise PipelineError(where, format_path(loc), f"{name!r} is not available: {exc}") from None
