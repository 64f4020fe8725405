"""Campaign expansion: ``expand(pipeline)`` → one :class:`RunSpec` per matrix combination × repeat.

For each combination (axes in YAML order, first outermost; values in list order) the matrix values are
applied to the base sections, then ``--set`` values again (they win over a whole-section axis), and the
run config is resolved (every model option filled in). ``config_hash`` ignores ``train.seed`` and
``resources``; ``seed`` is derived from (``train.seed``, repeat) alone, so every configuration of a campaign
sees the same data stream per seed (paired comparisons; see ``hashing``); ``run_key`` is
``f"{config_hash[:12]}-s{train.seed}-r{repeat}"``, unique within the campaign.
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import Invalid, PipelineError
from .hashing import canonical_json, config_hash, derive_seed, sha256_hex
from .locate import Locator, show
from .matrix import Combo, check_matrix, combinations, flat_overrides, set_path
from .resolve import estimator_options, resolve_run, unused_model_options
from .schema import DENSITY_ONLY, RUN_KINDS, SECTIONS, Pipeline, RunSpec


def locator_of(pipeline: Pipeline) -> Locator:
    """The pipeline's :class:`Locator` (a bare one for pipelines built in Python)."""
    return pipeline._locator or Locator()


def run_kind(pipeline: Pipeline) -> str | None:
    """The run kind of a campaign of regressions (``fit1d``: E1, ``coupling_linear``: E6) — it has that section or a
    matrix axis in it — or None for a density campaign."""
    for kind in RUN_KINDS:
        if getattr(pipeline, kind) is not None or any(axis.split(".")[0] == kind for axis in pipeline.matrix):
            return kind
    return None


def is_fit1d(pipeline: Pipeline) -> bool:
    """A campaign of E1 regressions: it has a ``fit1d`` section or matrix axis."""
    return run_kind(pipeline) == "fit1d"


def base_config(pipeline: Pipeline) -> dict[str, Any]:
    """The sections as written (defaults filled; the model holds only the options given)."""
    kind = run_kind(pipeline)
    if kind is not None:
        own = getattr(pipeline, kind)
        return {
            kind: own.model_dump() if own is not None else {},
            "train": pipeline.train.model_dump(),
            "resources": pipeline.resources.model_dump(),
        }
    raw = {name: getattr(pipeline, name).model_dump() for name in SECTIONS if name not in ("model", *RUN_KINDS)}
    raw["model"] = pipeline.model.model_dump(exclude_unset=True)
    return raw


def raw_config(pipeline: Pipeline, combo: Combo, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The sections of one matrix combination as written (base ← matrix values ← ``--set``), not resolved.

    ``base``: ``base_config(pipeline)``, computed once by a caller that expands many combinations; each section is
    copied (values are replaced, never mutated in place, by ``set_path``)."""
    raw = {name: dict(section) for name, section in (base or base_config(pipeline)).items()}
    for axis, (_, value) in combo.items():
        set_path(raw, axis, value)
    for path, value in (pipeline._overrides or {}).items():
        if path not in pipeline.matrix:
            set_path(raw, path, value)
    return raw


def run_config(pipeline: Pipeline, combo: Combo, raw: dict[str, Any] | None = None) -> dict[str, Any]:
    """Resolved config of one matrix combination; raises :class:`PipelineError` naming line and values."""
    try:
        return resolve_run(raw if raw is not None else raw_config(pipeline, combo))
    except Invalid as exc:
        raise locator_of(pipeline).error(exc, combo) from None


class _UnusedOptions:
    """Model options a user wrote that mean nothing for the data (``glow.levels`` on 2-D points) are refused, not
    silently ignored: an option counts as used when at least one run of the campaign fits data it applies to, so a
    matrix over toy and image sets may carry options of both kinds."""

    def __init__(self) -> None:
        self.unused: dict[str, tuple[Any, str, Combo]] = {}
        self.used: set[str] = set()

    def add(self, raw: dict[str, Any], config: dict[str, Any], combo: Combo) -> None:
        bad = {key: (value, applies) for key, value, applies in unused_model_options(raw, config)}
        for key in raw.get("model") or {}:
            if key in bad:
                self.unused.setdefault(key, (*bad[key], combo))
            else:
                self.used.add(key)

    def check(self, locator: Locator) -> None:
        for key, (value, applies, combo) in self.unused.items():
            if key not in self.used:
                other = "vectors" if applies == "images" else "images"
                problem = f"{value!r} is not meaningful for {other}: {key} applies to {applies} only"
                raise locator.error(Invalid(("model", key), problem), combo)


class _UnusedEstimatorKeys:
    """A key of the ``estimator`` section that no run's family declares would silently do nothing: refused."""

    def __init__(self) -> None:
        self.given: dict[str, Combo] = {}
        self.used: set[str] = set()

    def add(self, raw: dict[str, Any], config: dict[str, Any], combo: Combo) -> None:
        section = {k: v for k, v in (raw.get("estimator") or {}).items() if v is not None}
        for key in section:
            self.given.setdefault(key, combo)
        family = (config.get("model") or {}).get("family")
        if family is not None and section:
            self.used.update(estimator_options(family, raw.get("model") or {}, section))

    def check(self, locator: Locator) -> None:
        for key, combo in self.given.items():
            if key not in self.used:
                problem = "applies to no run of the campaign: no family here has this option (nflab models FAMILY)"
                raise locator.error(Invalid(("estimator", key), problem), combo)


def planned_runs(pipeline: Pipeline) -> int:
    """How many runs the pipeline expands to (matrix product × repeats), computed without expanding it."""
    total = pipeline.repeats
    for values in pipeline.matrix.values():
        total *= len(values)
    return total


def expand(pipeline: Pipeline) -> list[RunSpec]:
    """All runs of the campaign in a stable order; raises :class:`PipelineError` (one line) when invalid.

    A pipeline is expanded once: the runs are kept on it and every later call returns them.
    """
    if pipeline._runs is not None:
        return pipeline._runs
    locator = locator_of(pipeline)
    try:
        check_matrix(pipeline.matrix)
        _check_kind(pipeline)
    except Invalid as exc:
        raise locator.error(exc) from None
    runs: list[RunSpec] = []
    owners: dict[str, Combo] = {}
    unused = _UnusedOptions()
    unused_estimator = _UnusedEstimatorKeys()
    base = base_config(pipeline)
    for combo in combinations(pipeline.matrix):
        raw = raw_config(pipeline, combo, base)
        config = run_config(pipeline, combo, raw)
        unused.add(raw, config, combo)
        unused_estimator.add(raw, config, combo)
        digest = config_hash(config)
        base_seed = config["train"]["seed"]
        for repeat in range(pipeline.repeats):
            key = f"{digest[:12]}-s{base_seed}-r{repeat}"
            if key in owners:
                raise _duplicate(locator, owners[key], combo)
            owners[key] = combo
            runs.append(
                RunSpec(
                    campaign=pipeline.name,
                    run_key=key,
                    config_hash=digest,
                    seed=derive_seed(base_seed, repeat),
                    repeat=repeat,
                    overrides=flat_overrides(combo),
                    config=config if pipeline.repeats == 1 else copy.deepcopy(config),
                )
            )
    unused.check(locator)
    unused_estimator.check(locator)
    pipeline._runs = runs
    return runs


def _check_kind(pipeline: Pipeline) -> None:
    """A campaign of regressions (fit1d, coupling_linear) has no density sections (they would be silently ignored)."""
    kind = run_kind(pipeline)
    if kind is None:
        return
    given = [s for s in DENSITY_ONLY if s in pipeline.model_fields_set]
    given += [a for a in pipeline.matrix if a.split(".")[0] in DENSITY_ONLY]
    if given:
        where = ("matrix", given[0]) if "." in given[0] or given[0] in pipeline.matrix else (given[0],)
        what = "a regression of fit1d.target" if kind == "fit1d" else "regressions onto random linear maps"
        problem = f"is not used by a {kind} campaign ({what}: no dataset, model or eval)"
        raise Invalid(where, problem)


def _duplicate(locator: Locator, first: Combo, second: Combo) -> PipelineError:
    def text(combo: Combo) -> str:
        return ", ".join(f"{k}={show(v)}" for k, (_, v) in combo.items()) or "the base config"

    problem = f"the combinations ({text(first)}) and ({text(second)}) resolve to the same run"
    return locator.error(Invalid(("matrix",), problem))


def campaign_fingerprint(pipeline: Pipeline) -> str:
    """sha256 of the canonical resolved campaign (name, tags and every run) — equal for equal campaigns."""
    runs = [{"run_key": r.run_key, "seed": r.seed, "repeat": r.repeat, "config": r.config} for r in expand(pipeline)]
    return sha256_hex(canonical_json({"name": pipeline.name, "tags": pipeline.tags or {}, "runs": runs}))
