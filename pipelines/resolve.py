"""Resolve one run's config: validate the sections, resolve the model options, fill derived fields.

The result is a plain JSON-serialisable dict (lists, not tuples) holding every option of the model's family —
resolved for the run's kind of data (vectors for toy sets, images otherwise), with the pipeline's ``estimator``
section merged into the model's options — so that two configs are equal exactly when they describe the same run.
It is what the config hash is taken of, what the store keeps and what the worker receives.

Model options repeat across the runs of a matrix (a sweep over ``train.lr`` resolves one model many times), so the
model's resolution is cached on its canonical JSON.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

from pydantic import ValidationError

import nflab.flows as flows
from nflab.flows.data import TOY_DATASETS

from .describe import from_validation_error
from .errors import Invalid
from .hashing import canonical_json
from .schema import ESTIMATOR_OPTION, RunConfig

TOY_AVERAGE_LAST = 20  # the toy papers report the mean test NLL of the last 20 evaluations


def data_kind(dataset: str | None) -> str:
    """``vectors`` for the toy sets, ``images`` for the image sets."""
    return "vectors" if dataset in TOY_DATASETS else "images"


def resolve_run(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate ``raw`` (sections as dicts) and return the resolved config; raises :class:`Invalid`."""
    try:
        run = RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise from_validation_error(exc, raw, RunConfig) from None
    config = run.model_dump(mode="json")
    if run.fit1d is not None or run.coupling_linear is not None:
        return config  # {kind: fit1d | coupling_linear, <that section>, train, resources}
    estimator = config.pop("estimator")
    config["dataset"] = _dataset(config["dataset"])
    kind = data_kind(config["dataset"]["name"])
    config["model"] = resolve_model(raw.get("model") or {}, kind, estimator)
    toy = kind == "vectors"
    if config["eval"]["best_metric"] is None:
        config["eval"]["best_metric"] = "nats" if toy else "bpd"
    if config["eval"]["average_last"] is None:
        config["eval"]["average_last"] = TOY_AVERAGE_LAST if toy else 0
    return config


def estimator_options(family: str, model: dict[str, Any], estimator: dict[str, Any]) -> dict[str, str]:
    """``{section key: model option}`` of the ``estimator`` section's keys that apply to ``family`` (it declares the
    option) and that the model section does not set itself (the model's own option wins)."""
    fam = flows.registry.family(family)
    base = model.get("base") if model.get("base") in flows.registry.base_families() else fam.default_base
    specs = flows.options(family, base=base if fam.wraps_base else None)
    out = {}
    for key, value in estimator.items():
        name = ESTIMATOR_OPTION.get(key, key)
        if value is not None and name in specs and name not in model:
            out[key] = name
    return out


def resolve_model(
    model: dict[str, Any], kind: str = "vectors", estimator: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``{family, **options}`` with every option of the family for ``kind`` of data (defaults ← the kind's preset
    ← preset ← given ← the estimator section where the model does not set the option); lists, not tuples."""
    cached = _resolve_model(canonical_json(model), kind, canonical_json(estimator or {}))
    return {k: list(v) if isinstance(v, list) else v for k, v in cached.items()}  # values: scalars, lists of numbers


@functools.lru_cache(maxsize=4096)
def _resolve_model(model_json: str, kind: str, estimator_json: str) -> dict[str, Any]:
    options, estimator = json.loads(model_json), json.loads(estimator_json)
    family = options.pop("family", None)
    allowed = flows.available()
    if family is None:
        raise Invalid(("model", "family"), "required field missing (set it here or as a matrix axis)")
    if not isinstance(family, str) or family not in allowed:
        raise Invalid(("model", "family"), f"{family!r} is not one of: {', '.join(allowed)}")
    fam = flows.registry.family(family)
    base = options.get("base") if fam.wraps_base else None
    specs = flows.options(family, base=base if base in flows.registry.base_families() else fam.default_base)
    for key in options:
        if key not in specs:
            raise Invalid(("model", key), f"{key!r} is not an option of {family}; allowed: {', '.join(specs)}")
    merged = estimator_options(family, options, estimator) if estimator else {}
    from_section = {name: key for key, name in merged.items()}
    options.update({name: estimator[key] for key, name in merged.items()})
    try:
        cfg = flows.resolve_config(family, (2,) if kind == "vectors" else (1, 1, 1), **options)
    except flows.ConfigError as exc:
        head = exc.loc[0] if exc.loc else None
        loc = ("estimator", from_section[head], *exc.loc[1:]) if head in from_section else ("model", *exc.loc)
        raise Invalid(loc, f"{exc.value!r} is not {exc.allowed}") from None
    except (TypeError, ValueError) as exc:
        raise Invalid(("model",), f"{family}: {exc}") from None
    return {"family": family, **_jsonable(dataclasses.asdict(cfg))}


def unused_model_options(raw: dict[str, Any], config: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """The model options ``raw`` (a run's sections as written) sets that mean nothing for the run's data (vector
    options on images, image options on toy sets): ``(option, value, the data it applies to)``."""
    if config.get("kind") in ("fit1d", "coupling_linear"):
        return []
    family = config["model"]["family"]
    written = {k: v for k, v in (raw.get("model") or {}).items() if k != "family"}
    return list(_inapplicable(family, canonical_json(written), data_kind(config["dataset"]["name"])))


@functools.lru_cache(maxsize=4096)
def _inapplicable(family: str, written_json: str, kind: str) -> tuple[tuple[str, Any, str], ...]:
    return tuple(flows.registry.inapplicable(family, json.loads(written_json), kind, written=True))


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


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
