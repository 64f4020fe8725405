"""A tuned pipeline's search space, derived from the declarations, and one trial's resolved run.

``space: lipschitz`` (or ``estimator``, ``activation``, ``architecture``, ``solver``, ``optimizer``, ``all``, or a
list of them) expands to the family's tunable options of that space with their declared ranges (model options the
pipeline sets itself stay fixed); ``optimizer`` is the train options of :data:`~nflab.pipelines.schema.TRAIN_SEARCH`.
An explicit space names dotted paths (``model.<option>``, ``train.<field>``) with ``low``/``high``/``log`` or
``choices`` (``{}``: the declared range); a path the family does not have, a range outside the declared bounds or a
bad distribution is an :class:`Invalid` at its YAML line. Nothing here knows Optuna: :class:`Dimension` is plain.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

import nflab.flows as flows
from nflab.flows.options import ConfigError, OptionSpec, allowed_text, check_value, choices_of

from .errors import Invalid, PipelineError
from .expansion import base_config, locator_of
from .hashing import config_hash, derive_seed
from .resolve import data_kind, resolve_run
from .schema import TRAIN_SEARCH, Pipeline, TrainSpec

GRID_LIMIT = 100_000
MODEL_SPACES = ("lipschitz", "estimator", "activation", "architecture", "solver")


@dataclass(frozen=True)
class Dimension:
    """One searched value: ``path`` (``model.coeff``), ``kind`` (int | float | categorical) and its range."""

    path: str
    kind: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    def describe(self) -> str:
        if self.kind == "categorical":
            return "{" + ", ".join(str(c) for c in self.choices or ()) + "}"
        return f"[{self.low:g}, {self.high:g}]" + (" log" if self.log else "")


def _base_type(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return inner[0] if len(inner) == 1 else annotation
    return annotation


def _family_options(pipeline: Pipeline) -> tuple[str, dict[str, OptionSpec]]:
    model = pipeline.model.model_dump(exclude_unset=True)
    family = model.get("family")
    if family not in flows.available():
        raise Invalid(("model", "family"), f"a tuned pipeline needs one model.family (one of: {flows.available()})")
    fam = flows.registry.family(family)
    base = (model.get("base") or fam.default_base) if fam.wraps_base else None
    return family, flows.options(family, base=base)


def _train_bounds(name: str) -> tuple[tuple[str, float], ...]:
    out = []
    for meta in TrainSpec.model_fields[name].metadata:
        for key in ("gt", "ge", "lt", "le"):
            value = getattr(meta, key, None)
            if value is not None:
                out.append((key, value))
    return tuple(out)


def _declared(section: str, name: str, family: str, specs: dict[str, OptionSpec], kind: str) -> tuple[Any, Any, dict]:
    """(annotation, bounds, default search as a RangeSpec dict or {}) of one tunable path; raises Invalid."""
    if section == "model":
        if name not in specs:
            tunable = ", ".join(f"model.{n}" for n, s in specs.items() if s.tunable) or "none"
            raise Invalid((), f"{name!r} is not an option of {family}; tunable: {tunable}")
        spec = specs[name]
        if spec.applies not in (None, kind):
            raise Invalid((), f"{family}.{name} applies to {spec.applies} only, and this pipeline fits {kind}")
        search: dict[str, Any] = {}
        if spec.search is not None:
            if spec.search.low is not None:
                search = {"low": spec.search.low, "high": spec.search.high, "log": spec.search.log}
            else:
                search = {"choices": list(spec.search.choices or choices_of(spec.annotation) or ())}
        return spec.annotation, spec.bounds, search
    if section == "train":
        if name not in TrainSpec.model_fields or name in ("seed", "device", "dtype", "steps"):
            allowed = ", ".join(n for n in TrainSpec.model_fields if n not in ("seed", "device", "dtype", "steps"))
            raise Invalid((), f"{name!r} is not a tunable field of train; allowed: {allowed}")
        return TrainSpec.model_fields[name].annotation, _train_bounds(name), dict(TRAIN_SEARCH.get(name, {}))
    raise Invalid((), f"'{section}.{name}' is not a tunable path; allowed: model.<option>, train.<field>")


def _dimension(path: str, annotation: Any, bounds: Any, given: dict[str, Any]) -> Dimension:
    base = _base_type(annotation)
    choices = given.get("choices")
    if choices is not None:
        if given.get("low") is not None or given.get("high") is not None:
            raise Invalid(("choices",), "give either low/high or choices, not both")
        for i, value in enumerate(choices):
            try:
                check_value((), annotation, value, bounds)
            except ConfigError:
                raise Invalid(("choices", i), f"{value!r} is not {allowed_text(annotation, bounds)}") from None
        if len(set(map(repr, choices))) != len(choices):
            raise Invalid(("choices",), "repeats a value")
        return Dimension(path, "categorical", choices=tuple(choices))
    low, high, log = given.get("low"), given.get("high"), bool(given.get("log"))
    if base not in (int, float):
        allowed = choices_of(annotation)
        hint = f"; choose among {', '.join(map(str, allowed))}" if allowed else ""
        raise Invalid((), f"is {allowed_text(annotation)}: it takes choices, not a range{hint}")
    if low is None or high is None:
        raise Invalid((), "needs low and high (or choices): this option declares no search range")
    for key, value in (("low", low), ("high", high)):
        if base is int and (not isinstance(value, int) or isinstance(value, bool)):
            raise Invalid((key,), f"{value!r} is not an integer (the option is an integer)")
        try:
            check_value((), annotation, value, bounds)
        except ConfigError:
            raise Invalid(
                (key,), f"{value!r} is outside the declared bounds: {allowed_text(annotation, bounds)}"
            ) from None
    if not low < high:
        raise Invalid(("high",), f"{high!r} is not greater than low ({low!r})")
    if log and low <= 0:
        raise Invalid(("log",), f"a log range needs low > 0, not {low!r}")
    return Dimension(path, "int" if base is int else "float", low=low, high=high, log=log)


def _named(
    pipeline: Pipeline, names: list[str], family: str, specs: dict[str, OptionSpec], kind: str
) -> list[Dimension]:
    fixed_model = set(pipeline.model.model_dump(exclude_unset=True))
    fixed_train = pipeline.train.model_fields_set
    wanted = {*MODEL_SPACES, "optimizer"} if "all" in names else set(names)
    dims: list[Dimension] = []
    for name, spec in specs.items():
        if not spec.tunable or name in fixed_model or spec.applies not in (None, kind):
            continue
        if wanted & set(spec.spaces):
            _, bounds, search = _declared("model", name, family, specs, kind)
            dims.append(_dimension(f"model.{name}", spec.annotation, bounds, search))
    if "optimizer" in wanted:
        for name, search in TRAIN_SEARCH.items():
            if name not in fixed_train:
                annotation, bounds, _ = _declared("train", name, family, specs, kind)
                dims.append(_dimension(f"train.{name}", annotation, bounds, dict(search)))
    if not dims:
        raise Invalid(
            ("tune", "space"),
            f"{', '.join(names)} has no tunable option of {family} for {kind} that the pipeline leaves free "
            f"(see nflab models {family})",
        )
    return dims


def search_space(pipeline: Pipeline) -> list[Dimension]:
    """The dimensions of the pipeline's study (raises :class:`PipelineError`, one line, at the YAML line)."""
    try:
        return _search_space(pipeline)
    except Invalid as exc:
        raise locator_of(pipeline).error(exc) from None


def _search_space(pipeline: Pipeline) -> list[Dimension]:
    tune = pipeline.tune
    if tune is None:
        raise Invalid(("tune",), "the pipeline has no tune section")
    if pipeline.matrix:
        raise Invalid(("matrix",), "a tuned pipeline has no matrix: the study chooses the values (use tune.space)")
    if pipeline.repeats != 1:
        raise Invalid(("repeats",), "a tuned pipeline runs one seed per trial (nflab tune promote runs several)")
    if pipeline.fit1d is not None:
        raise Invalid(("fit1d",), "fit1d regressions cannot be tuned (a density pipeline only)")
    if pipeline.coupling_linear is not None:
        raise Invalid(("coupling_linear",), "coupling_linear regressions cannot be tuned (a density pipeline only)")
    family, specs = _family_options(pipeline)
    kind = data_kind(pipeline.dataset.name)
    if isinstance(tune.space, str | list):
        names = [tune.space] if isinstance(tune.space, str) else list(tune.space)
        dims = _named(pipeline, names, family, specs, kind)
    else:
        if not tune.space:
            raise Invalid(("tune", "space"), "an explicit space needs at least one path")
        dims = []
        for path, given in tune.space.items():
            loc = ("tune", "space", path)
            section, _, name = path.partition(".")
            try:
                annotation, bounds, search = _declared(section, name, family, specs, kind)
                explicit = given.model_dump(exclude_unset=True)
                if not explicit and not search:
                    raise Invalid((), "needs low and high (or choices): this option declares no search range")
                dims.append(_dimension(path, annotation, bounds, explicit or search))
            except Invalid as exc:
                raise Invalid((*loc, *exc.loc), exc.problem) from None
    _check_sampler(tune.sampler.kind, dims)
    return dims


def _check_sampler(kind: str, dims: list[Dimension]) -> None:
    if kind == "grid":
        size = 1
        for d in dims:
            if d.kind == "float":
                raise Invalid(
                    ("tune", "sampler", "kind"), f"grid needs choices or integer ranges; {d.path} is a float range"
                )
            size *= len(d.choices) if d.kind == "categorical" else int(d.high - d.low + 1)
        if size > GRID_LIMIT:
            raise Invalid(("tune", "sampler", "kind"), f"the grid has {size:,} points, more than {GRID_LIMIT:,}")
    if kind == "cmaes" and all(d.kind == "categorical" for d in dims):
        raise Invalid(("tune", "sampler", "kind"), "cmaes searches numbers; this space has only choices (use tpe)")


def grid_points(dims: list[Dimension]) -> dict[str, list[Any]]:
    """The values of every dimension of a grid search (integer ranges enumerated)."""
    return {
        d.path: list(d.choices or ()) if d.kind == "categorical" else list(range(int(d.low), int(d.high) + 1))
        for d in dims
    }


def trial_spec(pipeline: Pipeline, params: dict[str, Any], number: int, study: str) -> dict[str, Any]:
    """The resolved run spec of trial ``number`` with ``params`` (``{dotted.path: value}``) applied to the pipeline's
    one configuration; raises :class:`Invalid` when the combination is not a valid run."""
    raw = {name: dict(section) for name, section in base_config(pipeline).items()}
    for path, value in (pipeline._overrides or {}).items():
        section, _, name = path.partition(".")
        if name:
            raw.setdefault(section, {})[name] = value
    for path, value in params.items():
        section, _, name = path.partition(".")
        raw.setdefault(section, {})[name] = value
    try:
        config = resolve_run(raw)
    except ValidationError as exc:  # pragma: no cover - resolve_run wraps validation errors
        raise Invalid(("tune",), str(exc)) from None
    digest = config_hash(config)
    seed = config["train"]["seed"]
    return {
        "campaign": study,
        "run_key": f"t{number:04d}-{digest[:12]}",
        "config_hash": digest,
        "seed": derive_seed(seed, 0),
        "repeat": 0,
        "overrides": dict(params),
        "config": config,
    }


def check_trial_params(pipeline: Pipeline, dims: list[Dimension]) -> None:
    """Resolve the study's configuration with the lower end of every dimension, so that a space that can never
    make a valid run is refused at load (values of single trials may still be refused, and fail that trial)."""
    params = {d.path: d.choices[0] if d.choices else (int(d.low) if d.kind == "int" else d.low) for d in dims}
    try:
        trial_spec(pipeline, params, 0, pipeline.name)
    except Invalid as exc:
        raise locator_of(pipeline).error(Invalid(("tune", "space"), f"{exc}")) from None
    except PipelineError:  # pragma: no cover
        raise
