"""Resolve one run's config: validate the sections, resolve the model options, fill derived fields.

The result is a plain JSON-serialisable dict (lists, not tuples) holding every option of the model's
family, so that two configs are equal exactly when they describe the same run.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from pydantic import ValidationError

import nflab.flows as flows
from nflab.flows.data import TOY_DATASETS

from .describe import from_validation_error
from .errors import Invalid
from .schema import RunConfig

_INDEX = re.compile(r"\[(\d+)\]")
TOY_AVERAGE_LAST = 20  # the toy papers report the mean test NLL of the last 20 evaluations


def resolve_run(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate ``raw`` (sections as dicts) and return the resolved config; raises :class:`Invalid`."""
    try:
        run = RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise from_validation_error(exc, raw, RunConfig) from None
    config = run.model_dump(mode="json")
    if run.analysis.kind == "fit1d":
        return _regression(config)
    config["dataset"] = _dataset(config["dataset"])
    config["model"] = resolve_model(raw.get("model") or {})
    toy = config["dataset"]["name"] in TOY_DATASETS
    if config["eval"]["best_metric"] is None:
        config["eval"]["best_metric"] = "nats" if toy else "bpd"
    if config["eval"]["average_last"] is None:
        config["eval"]["average_last"] = TOY_AVERAGE_LAST if toy else 0
    return config


def unused_model_options(raw: dict[str, Any], config: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """The model options ``raw`` (a run's sections as written) sets that mean nothing for the run's data (vector
    options on images, image options on toy sets): ``(option, value, the data it applies to)``."""
    family = config["model"]["family"]
    if family is None:
        return []
    written = {k: v for k, v in (raw.get("model") or {}).items() if k != "family"}
    kind = "vectors" if config["dataset"]["name"] in TOY_DATASETS else "images"
    return flows.registry.inapplicable(family, written, kind, written=True)


def _regression(config: dict[str, Any]) -> dict[str, Any]:
    """An E1 run (``analysis.kind: fit1d``) fits ``analysis.target`` with blocks built from the analysis options:
    it has no dataset and no model family, so both are recorded null (and any given ones are left out, like the
    options of other analysis kinds, so that a matrix may mix density and fit1d runs)."""
    config["dataset"] = {
        "name": None,
        "test_samples": None,
        "validation_samples": None,
        "train_subset": None,
        "n_bins": None,
    }
    config["model"] = {"family": None}
    return config


def _dataset(dataset: dict[str, Any]) -> dict[str, Any]:
    name = dataset["name"]
    if name is None:
        raise Invalid(("dataset", "name"), "required field missing (set it here or as a matrix axis)")
    if name in TOY_DATASETS and dataset["train_subset"] is not None:
        raise Invalid(
            ("dataset", "train_subset"),
            f"{dataset['train_subset']!r} is not allowed: toy sets draw fresh samples (images only)",
        )
    derived = None if name in TOY_DATASETS else 17 if name == "digits" else 256
    if dataset["n_bins"] is not None and dataset["n_bins"] != derived:
        raise Invalid(("dataset", "n_bins"), f"{dataset['n_bins']!r} is not {derived!r} (derived from {name})")
    validation = dataset["validation_samples"]
    if validation is None and name in TOY_DATASETS:
        validation = dataset["test_samples"]
    return {**dataset, "n_bins": derived, "validation_samples": validation}


def resolve_model(model: dict[str, Any]) -> dict[str, Any]:
    """``{family, **options}`` with every option of the family (defaults ← preset ← given); lists not tuples."""
    options = dict(model)
    family = options.pop("family", None)
    allowed = flows.available()
    if family is None:
        raise Invalid(("model", "family"), "required field missing (set it here or as a matrix axis)")
    if family not in allowed:
        raise Invalid(("model", "family"), f"{family!r} is not one of: {', '.join(allowed)}")
    fam = flows.registry.family(family)
    base = options.get("base") if fam.wraps_base else None
    specs = flows.options(family, base=base if base is not None else fam.default_base)
    for key in options:
        if key not in specs:
            raise Invalid(("model", key), f"{key!r} is not an option of {family}; allowed: {', '.join(specs)}")
    try:
        cfg = flows.resolve_config(family, **options)
    except flows.ConfigError as exc:
        raise Invalid(_model_loc(family, exc.path), f"{exc.value!r} is not {exc.allowed}") from None
    except (TypeError, ValueError) as exc:
        raise Invalid(("model",), f"{family}: {exc}") from None
    return {"family": family, **_jsonable(dataclasses.asdict(cfg))}


def _model_loc(family: str, path: str) -> tuple[Any, ...]:
    """``realnvp.hidden[1]`` → ``('model', 'hidden', 1)``."""
    if path == "family":
        return ("model", "family")
    path = path.removeprefix(f"{family}.")
    head_name = path.split(".", 1)[0]
    if "." in path and head_name in flows.available():  # a wrapped base family's option: ``realnvp.couplings``
        path = path.split(".", 1)[1]
    head = _INDEX.split(path)
    loc: list[Any] = ["model"]
    if head[0]:
        loc += head[0].split(".")
    loc += [int(i) for i in _INDEX.findall(path)]
    return tuple(loc)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
