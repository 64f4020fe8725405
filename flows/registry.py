"""The family registry: ``available()``, ``options(name)`` and ``build(name, shape, **config)``.

Each family registers a config dataclass of declared options (``nflab.flows.options``: type, default, range, doc,
search range) whose defaults are the published vector (toy) ones, named presets (complete option sets by
override: ``cifar10``, ``digits``, ``small``), the preset that holds the published defaults of each other kind of
data (``by_data={"images": "cifar10"}``), and a builder ``(shape, config) -> Transform`` (or a ready ``Flow``).
A config is resolved once, for the kind of data: field defaults ← the kind's preset ← the named ``preset`` ← the
options given, every value checked against its declaration, so that every front end (Python, YAML pipelines, the
CLI) reports the same one-line :class:`ConfigError`. A resolved config holds no ``None`` placeholder: it is what
the builder uses.

Two kinds of options join a family's own:

- Every family accepts the augmentation options of ``nflab.flows.augment`` (``dequantization``, ``padding`` and
  theirs): the family is built on the padded shape and wrapped. They appear in the resolved config only when
  one of them differs from its default, so configs of unwrapped models are exactly the family's own.
- A family registered with ``wraps_base=True`` (CIF) wraps another family named by its ``base`` option. Every
  option that is not the wrapper's own is the base's, validated by the base family (errors read
  ``realnvp.couplings: 'x' is not an integer``); a ``preset`` applies to each of the two that defines it.

A config that holds more than one part is an instance of a dataclass combining the parts' classes (wrapper's
fields, then the base's, then the augmentation's), so it is an instance of each part's class and the base
family's builder (and its ``validate``) work on it unchanged; ``dataclasses.asdict`` of it is flat.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

# After ConfigError: the wrappers import layers, and modules reached from there may import ConfigError from here.
from .augment import AUGMENT_OPTIONS, AugmentConfig, augment_flow, augment_part, padded_shape
from .flow import Flow
from .options import ConfigError, OptionSpec, check_value, describe_type, json_type, specs_of  # noqa: F401 (re-exported)
from .transform import Transform

Builder = Callable[[tuple[int, ...], Any], "Transform | Flow"]
DATA_KINDS = ("vectors", "images")


@dataclass(frozen=True)
class Family:
    """A registered family: its options (``config_cls``), named presets, the preset chosen by the kind of data, the
    builder and what the rest of the system needs to know about it.

    ``by_data``: ``{"images": "cifar10"}`` — the preset that holds the published defaults for that kind of data (the
    field defaults are the published vector/toy ones). ``tf32_off``: its numerics need full float32 matmuls on GPU
    (fixed-point solves of implicit and monotone blocks).
    """

    name: str
    config_cls: type
    builder: Builder
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    summary: str = ""
    wraps_base: bool = False
    default_base: str | None = None
    by_data: dict[str, str] = field(default_factory=dict)
    tf32_off: bool = False


_FAMILIES: dict[str, Family] = {}


def register(
    name: str,
    config_cls: type,
    *,
    presets: dict[str, dict[str, Any]] | None = None,
    summary: str = "",
    wraps_base: bool = False,
    default_base: str | None = None,
    by_data: dict[str, str] | None = None,
    tf32_off: bool = False,
) -> Callable[[Builder], Builder]:
    """Decorator registering a family builder under ``name`` (see :class:`Family`).

    ``wraps_base=True``: the family wraps the family named by its ``base`` option (``default_base`` when unset).
    """
    own = set(specs_of(config_cls))
    clash = sorted(own & set(AUGMENT_OPTIONS))
    if clash:
        raise TypeError(f"family {name}: options {clash} clash with the common augmentation options")
    presets = {k: dict(v) for k, v in (presets or {}).items()}
    for preset, values in presets.items():
        if set(values) - own:
            raise TypeError(f"family {name}: preset {preset} sets unknown options {sorted(set(values) - own)}")
    for kind, preset in (by_data or {}).items():
        if kind not in DATA_KINDS or preset not in presets:
            raise TypeError(f"family {name}: by_data {kind}={preset} names no kind of data or preset")

    def wrap(builder: Builder) -> Builder:
        _FAMILIES[name] = Family(
            name, config_cls, builder, presets, summary, wraps_base, default_base, dict(by_data or {}), tf32_off
        )
        return builder

    return wrap


def available() -> list[str]:
    """Names of the registered flow families, in registration order."""
    return list(_FAMILIES)


def family(name: str) -> Family:
    if name not in _FAMILIES:
        raise ConfigError(("family",), name, f"one of: {', '.join(available())}")
    return _FAMILIES[name]


def base_families() -> list[str]:
    """The families a wrapping family can wrap (every family that does not itself wrap one)."""
    return [name for name, fam in _FAMILIES.items() if not fam.wraps_base]


def options(name: str, *, base: str | None = None) -> dict[str, OptionSpec]:
    """The options of a family with their types, defaults, ranges and docs: its own, ``preset``, then the augmentation
    options every family accepts. For a wrapping family, ``base`` adds that base family's options."""
    fam = family(name)
    specs = specs_of(fam.config_cls)
    presets = list(fam.presets)
    if fam.wraps_base and base is not None:
        base_fam = _base_family(fam, base)
        specs.update({k: v for k, v in specs_of(base_fam.config_cls).items() if k not in specs})
        presets += [p for p in base_fam.presets if p not in presets]
    if presets:
        doc = "a named configuration (" + "; ".join(_preset_doc(fam, p) for p in presets) + ")"
        specs["preset"] = OptionSpec("preset", Literal[tuple(presets)] | None, None, doc)
    specs.update(specs_of(AugmentConfig))
    return specs


def _preset_doc(fam: Family, preset: str) -> str:
    chosen = [kind for kind, p in fam.by_data.items() if p == preset]
    return f"{preset}: the default for {', '.join(chosen)}" if chosen else preset


def data_kind(shape: Sequence[int] | None) -> str:
    """``images`` for (c, h, w) samples, ``vectors`` for (d,) (and when the shape is not known)."""
    return "images" if shape is not None and len(shape) == 3 else "vectors"


def _family_part(fam: Family, kind: str, preset: str | None, given: dict[str, Any]) -> Any:
    """A family's own config: field defaults ← its preset for ``kind`` ← the named preset ← given, all checked."""
    specs = specs_of(fam.config_cls)
    values: dict[str, Any] = {}
    if kind in fam.by_data:
        values.update(fam.presets[fam.by_data[kind]])
    if preset is not None and preset in fam.presets:
        values.update(fam.presets[preset])
    values.update(given)
    try:
        checked = {k: check_value((k,), specs[k].annotation, v, specs[k].bounds) for k, v in values.items()}
        cfg = fam.config_cls(**checked)
        validate = getattr(cfg, "validate", None)
        if validate is not None:
            validate()
    except ConfigError as exc:
        raise exc.within(fam.name) from None
    return cfg


def _check_preset(name: str, preset: Any, allowed: list[str]) -> None:
    if preset is None:
        return
    if not allowed:
        raise ConfigError(("preset",), preset, f"available: {name} has no presets", family=name)
    check_value(("preset",), Literal[tuple(allowed)], preset)


def _unknown(name: str, key: str, where: str, allowed: dict[str, OptionSpec]) -> ConfigError:
    return ConfigError((key,), key, f"an option of {where}; allowed: {', '.join(allowed)}", family=name)


def _base_family(fam: Family, base: Any, *, defaulted: bool = False) -> Family:
    allowed = [b for b in base_families() if b != fam.name]
    if not isinstance(base, str) or base not in allowed:
        note = f" (the default base of {fam.name}, which is not registered: choose one)" if defaulted else ""
        raise ConfigError(("base",), base, f"one of: {', '.join(allowed)}{note}", family=fam.name)
    return _FAMILIES[base]


def _wrapping_parts(fam: Family, kind: str, preset: Any, config: dict[str, Any]) -> list[Any]:
    """[wrapper config, base config] of a wrapping family; options not the wrapper's go to the base."""
    base = config.pop("base", None)
    base_fam = _base_family(fam, base if base is not None else fam.default_base, defaulted=base is None)
    own_names = set(specs_of(fam.config_cls))
    base_names = set(specs_of(base_fam.config_cls))
    if own_names & base_names:  # pragma: no cover - a programming error of the two families
        raise TypeError(f"{fam.name} and {base_fam.name} share option names {sorted(own_names & base_names)}")
    specs = options(fam.name, base=base_fam.name)
    try:
        _check_preset(fam.name, preset, [*fam.presets, *(p for p in base_fam.presets if p not in fam.presets)])
    except ConfigError as exc:
        raise exc.within(fam.name) from None
    for key in config:
        if key not in own_names and key not in base_names:
            raise _unknown(fam.name, key, f"{fam.name} or of its base {base_fam.name}", specs)
    own = {k: v for k, v in config.items() if k in own_names}
    base_given = {k: v for k, v in config.items() if k in base_names}
    return [
        _family_part(fam, kind, preset, {**own, "base": base_fam.name}),
        _family_part(base_fam, kind, preset, base_given),
    ]


def _augment_part(name: str, kind: str, given: dict[str, Any]) -> AugmentConfig:
    specs = specs_of(AugmentConfig)
    try:
        checked = {k: check_value((k,), specs[k].annotation, v, specs[k].bounds) for k, v in given.items()}
    except ConfigError as exc:
        raise exc.within(name) from None
    return AugmentConfig(**checked).normalized(kind)


def resolve_config(name: str, shape: Sequence[int] | None = None, **config: Any) -> Any:
    """The checked config dataclass of family ``name`` for samples of ``shape`` (None: vectors):
    defaults ← the preset of that kind of data ← the named ``preset`` ← explicit options (module docstring)."""
    fam = family(name)
    kind = data_kind(shape)
    preset = config.pop("preset", None)
    augment_given = {k: config.pop(k) for k in AUGMENT_OPTIONS if k in config}
    if fam.wraps_base:
        parts = _wrapping_parts(fam, kind, preset, config)
    else:
        try:
            _check_preset(name, preset, list(fam.presets))
        except ConfigError as exc:
            raise exc.within(name) from None
        specs = options(name)
        for key in config:
            if key not in specs:
                raise _unknown(name, key, name, specs)
        parts = [_family_part(fam, kind, preset, config)]
    augment = _augment_part(name, kind, augment_given)
    if augment != AugmentConfig():
        parts.append(augment)
    return parts[0] if len(parts) == 1 else combine_configs(parts)


def _same(a: Any, b: Any) -> bool:
    def norm(v: Any) -> Any:
        return tuple(norm(x) for x in v) if isinstance(v, list | tuple) else v

    return norm(a) == norm(b)


def _parts_of(fam: Family, options: Mapping[str, Any]) -> list[Family]:
    if not fam.wraps_base:
        return [fam]
    return [fam, _base_family(fam, options.get("base") or fam.default_base, defaulted=not options.get("base"))]


def preset_of(name: str, options: Mapping[str, Any], kind: str = "vectors") -> str:
    """The size class of a resolved model config (a resolved config does not keep a preset's name: presets are
    shorthand): the first named preset whose every value the options hold (for a wrapping family, in each part that
    defines it); ``default`` when every option any preset sets holds its default for ``kind``; ``custom``
    otherwise."""
    fam = family(name)
    parts = _parts_of(fam, options)
    for preset in dict.fromkeys(p for part in parts for p in part.presets):
        if any(part.by_data.get(kind) == preset for part in parts):
            continue  # the default of this kind of data: reported as ``default``
        defined = [part.presets[preset] for part in parts if preset in part.presets]
        if all(_same(options.get(k), v) for values in defined for k, v in values.items()):
            return preset
    for part in parts:
        defaults = {k: spec.default for k, spec in specs_of(part.config_cls).items()}
        if kind in part.by_data:
            defaults.update(part.presets[part.by_data[kind]])
        sized = {k for values in part.presets.values() for k in values}
        if not all(_same(options.get(k), defaults[k]) for k in sized):
            return "custom"
    return "default"


def combine_configs(parts: Sequence[Any]) -> Any:
    """One flat config holding every field of ``parts`` (dataclass instances with disjoint field names)."""
    cls = _combined_class(tuple(type(p) for p in parts))
    return cls(**{f.name: getattr(p, f.name) for p in parts for f in dataclasses.fields(p)})


def _restore_combined(classes: tuple[type, ...], values: dict[str, Any]) -> Any:
    return _combined_class(classes)(**values)


def _reduce_combined(self: Any) -> tuple[Any, ...]:
    values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    return _restore_combined, (type(self).parts, values)


@functools.cache
def _combined_class(classes: tuple[type, ...]) -> type:
    """A dataclass inheriting from every class of ``classes`` with their fields in the given order.

    Dataclass fields follow the reversed MRO, so the bases are the classes reversed; methods then resolve from
    the last class first: the base family's (its builder may call ``validate`` or ``dataclasses.replace``),
    since ``AugmentConfig`` defines no ``validate`` and the wrapper's comes after the base's.
    """
    name = "".join(c.__name__.removesuffix("Config") for c in classes) + "Config"
    cls = dataclasses.make_dataclass(name, [], bases=tuple(reversed(classes)), namespace={"parts": classes})
    cls.__module__ = __name__
    cls.__reduce__ = _reduce_combined  # type: ignore[method-assign]
    return cls


def inapplicable(name: str, given: dict[str, Any], kind: str, *, written: bool = False) -> list[tuple[str, Any, str]]:
    """``(option, value, the data it applies to)`` for each option of ``given`` that means nothing for ``kind``
    (``images`` or ``vectors``) of data, e.g. ``glow.levels`` on 2-D points.

    ``written=True``: ``given`` are options a user wrote, each one counts. Otherwise ``given`` may be a resolved
    config listing every option of the family, so a value the family itself supplies (its default or a preset's)
    is not counted.
    """
    fam = family(name)
    base = given.get("base") or fam.default_base if fam.wraps_base else None
    specs = options(name, base=base)
    presets = [*fam.presets.values(), *(_FAMILIES[base].presets.values() if base in _FAMILIES else [])]
    found = []
    for key, value in given.items():
        spec = specs.get(key)
        if spec is None or spec.applies in (None, kind):
            continue
        supplied = [spec.default, *(p[key] for p in presets if key in p)]
        if written or not any(_same(value, v) for v in supplied):
            found.append((key, value, spec.applies))
    return found


def check_applicable(name: str, given: dict[str, Any], kind: str) -> None:
    """Refuse an option set for data it means nothing for instead of ignoring it (see :func:`inapplicable`)."""
    for key, value, applies in inapplicable(name, given, kind):
        raise ConfigError((key,), value, f"meaningful for {kind} ({key} applies to {applies} only)", family=name)


def check_shape(name: str, shape: Sequence[int]) -> tuple[int, ...]:
    try:
        shp = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ConfigError(("shape",), shape, "a tuple of positive integers", family=name) from None
    if len(shp) not in (1, 3) or any(s <= 0 for s in shp):
        raise ConfigError(("shape",), shape, "(d,) for vectors or (c, h, w) for images", family=name)
    return shp


def build_transform(name: str, shape: tuple[int, ...], cfg: Any) -> Transform:
    """The transform of family ``name`` on ``shape`` from a resolved config (used by wrapping families)."""
    try:
        made = family(name).builder(shape, cfg)
    except ConfigError as exc:
        raise exc.within(name) from None
    if isinstance(made, Flow):
        raise TypeError(f"{name} builds a whole flow, not a transform another family can wrap")
    return made


def build(name: str, shape: Sequence[int], **config: Any) -> Flow:
    """Build a flow of family ``name`` for samples of ``shape`` ((d,) or (c, h, w)) with published defaults."""
    fam = family(name)
    shp = check_shape(name, shape)
    cfg = resolve_config(name, shp, **config)
    check_applicable(name, config, data_kind(shp))
    augment = augment_part(cfg)
    inner_shape = padded_shape(shp, augment.padding)
    try:
        made = fam.builder(inner_shape, cfg)
    except ConfigError as exc:
        raise exc.within(name) from None
    flow = made if isinstance(made, Flow) else Flow(made, inner_shape, name=name, config=cfg)
    return augment_flow(flow, shp, augment)


def defaults(name: str, kind: str = "vectors", preset: str | None = None) -> dict[str, Any]:
    """The resolved options of family ``name`` for ``kind`` of data (and a named preset), as a flat dict."""
    shape = (2,) if kind == "vectors" else (1, 8, 8)
    return dataclasses.asdict(resolve_config(name, shape, **({"preset": preset} if preset else {})))


def json_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of family ``name``'s options (the declarations: type, range, default for vectors, doc; the
    tunable ones carry ``x-search``: their default search range and spaces)."""
    properties: dict[str, Any] = {"family": {"const": name}}
    for key, spec in options(name).items():
        prop = json_type(spec.annotation, spec.bounds)
        prop["description"] = spec.doc
        if key != "preset":
            prop["default"] = list(spec.default) if isinstance(spec.default, tuple) else spec.default
        if spec.applies:
            prop["x-applies"] = spec.applies
        if spec.search is not None:
            prop["x-search"] = {
                "spaces": list(spec.spaces),
                **{k: v for k, v in dataclasses.asdict(spec.search).items() if v is not None and v is not False},
            }
        properties[key] = prop
    fam = family(name)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"nflab model options: {name}",
        "description": fam.summary,
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "x-presets": {
            p: {k: list(v) if isinstance(v, tuple) else v for k, v in vals.items()} for p, vals in fam.presets.items()
        },
        "x-by-data": dict(fam.by_data),
    }
