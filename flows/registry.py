"""The family registry: ``available()``, ``options(name)`` and ``build(name, shape, **config)``.

Each family registers a config dataclass whose defaults are the published ones, optional named presets
(smaller, explicit), and a builder ``(shape, config) -> Transform`` (or a ready ``Flow``). Options are
type-checked here so that every front end (Python, YAML pipelines, the CLI) reports the same one-line error.

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
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .flow import Flow
from .transform import Transform


class ConfigError(ValueError):
    """A bad model option: names the option, the value and what is allowed."""

    def __init__(self, path: str, value: Any, allowed: str) -> None:
        self.path, self.value, self.allowed = path, value, allowed
        super().__init__(f"{path}: {value!r} is not {allowed}")


# After ConfigError: the wrappers import layers, and modules reached from there may import ConfigError from here.
from .augment import AUGMENT_OPTIONS, AugmentConfig, augment_flow, augment_part, padded_shape  # noqa: E402

Builder = Callable[[tuple[int, ...], Any], "Transform | Flow"]


@dataclass(frozen=True)
class Family:
    name: str
    config_cls: type
    builder: Builder
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    summary: str = ""
    wraps_base: bool = False
    default_base: str | None = None


_FAMILIES: dict[str, Family] = {}


def register(
    name: str,
    config_cls: type,
    *,
    presets: dict[str, dict[str, Any]] | None = None,
    summary: str = "",
    wraps_base: bool = False,
    default_base: str | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator registering a family builder under ``name``.

    ``wraps_base=True``: the family wraps the family named by its ``base`` option (``default_base`` when unset).
    """
    clash = sorted({f.name for f in dataclasses.fields(config_cls)} & set(AUGMENT_OPTIONS))
    if clash:
        raise TypeError(f"family {name}: options {clash} clash with the common augmentation options")

    def wrap(builder: Builder) -> Builder:
        _FAMILIES[name] = Family(name, config_cls, builder, dict(presets or {}), summary, wraps_base, default_base)
        return builder

    return wrap


def available() -> list[str]:
    """Names of the registered flow families, in registration order."""
    return list(_FAMILIES)


def family(name: str) -> Family:
    if name not in _FAMILIES:
        raise ConfigError("family", name, f"one of: {', '.join(available())}")
    return _FAMILIES[name]


def base_families() -> list[str]:
    """The families a wrapping family can wrap (every family that does not itself wrap one)."""
    return [name for name, fam in _FAMILIES.items() if not fam.wraps_base]


@dataclass(frozen=True)
class OptionSpec:
    name: str
    annotation: Any
    default: Any
    doc: str
    applies: str | None = None  # "images" / "vectors": meaningful for that kind of data only; None: for both

    @property
    def allowed(self) -> str:
        return describe_type(self.annotation)


def _field_specs(config_cls: type) -> dict[str, OptionSpec]:
    hints = typing.get_type_hints(config_cls)
    return {
        f.name: OptionSpec(f.name, hints[f.name], f.default, f.metadata.get("doc", ""), f.metadata.get("applies"))
        for f in dataclasses.fields(config_cls)
    }


def options(name: str, *, base: str | None = None) -> dict[str, OptionSpec]:
    """The options of a family with their types, defaults and one-line descriptions: its own, ``preset``, then the
    augmentation options every family accepts. For a wrapping family, ``base`` adds that base family's options."""
    fam = family(name)
    specs = _field_specs(fam.config_cls)
    presets = list(fam.presets)
    if fam.wraps_base and base is not None:
        base_fam = _base_family(fam, base)
        specs.update({k: v for k, v in _field_specs(base_fam.config_cls).items() if k not in specs})
        presets += [p for p in base_fam.presets if p not in presets]
    if presets:
        specs["preset"] = OptionSpec("preset", Literal[tuple(presets)], None, "a named smaller configuration")
    specs.update(_field_specs(AugmentConfig))
    return specs


def describe_type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of: " + ", ".join(str(a) for a in typing.get_args(annotation))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(describe_type(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    if origin is tuple:
        return f"a list of {describe_type(typing.get_args(annotation)[0])}s"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(annotation, str(annotation))


def coerce_value(path: str, annotation: Any, value: Any) -> Any:
    """Check ``value`` against ``annotation`` (int, float, bool, str, Literal, tuple[int, ...], unions)."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in typing.get_args(annotation)):
            return value
        raise ConfigError(path, value, describe_type(annotation))
    if origin in (types.UnionType, typing.Union):
        for arg in typing.get_args(annotation):
            try:
                return coerce_value(path, arg, value)
            except ConfigError:
                continue
        raise ConfigError(path, value, describe_type(annotation))
    if annotation is type(None):
        if value is None:
            return None
        raise ConfigError(path, value, "null")
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        if not isinstance(value, list | tuple):
            raise ConfigError(path, value, describe_type(annotation))
        return tuple(coerce_value(f"{path}[{i}]", item, v) for i, v in enumerate(value))
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(path, value, "a finite number")
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a family declared an unsupported option type
        raise TypeError(f"unsupported option type {annotation!r} for {path}")
    raise ConfigError(path, value, describe_type(annotation))


def _checked(name: str, config_cls: type, values: dict[str, Any]) -> Any:
    """``config_cls(**values)`` with every value type-checked under the path ``name.option``."""
    specs = _field_specs(config_cls)
    return config_cls(**{k: coerce_value(f"{name}.{k}", specs[k].annotation, v) for k, v in values.items()})


def _family_part(fam: Family, preset: str | None, given: dict[str, Any]) -> Any:
    """A family's own config: defaults ← its preset (if it defines ``preset``) ← given, then ``validate()``."""
    values = dict(fam.presets.get(preset, {})) if preset is not None else {}
    values.update(given)
    cfg = _checked(fam.name, fam.config_cls, values)
    validate = getattr(cfg, "validate", None)
    if validate is not None:
        validate()
    return cfg


def _check_preset(name: str, preset: Any, allowed: list[str]) -> None:
    if preset is None:
        return
    if not allowed:
        raise ConfigError(f"{name}.preset", preset, f"available: {name} has no presets")
    coerce_value(f"{name}.preset", Literal[tuple(allowed)], preset)


def _unknown(name: str, key: str, where: str, allowed: dict[str, OptionSpec]) -> ConfigError:
    return ConfigError(f"{name}.{key}", key, f"an option of {where}; allowed: {', '.join(allowed)}")


def _base_family(fam: Family, base: Any, *, defaulted: bool = False) -> Family:
    allowed = [b for b in base_families() if b != fam.name]
    if not isinstance(base, str) or base not in allowed:
        note = f" (the default base of {fam.name}, which is not registered: choose one)" if defaulted else ""
        raise ConfigError(f"{fam.name}.base", base, f"one of: {', '.join(allowed)}{note}")
    return _FAMILIES[base]


def _wrapping_parts(fam: Family, preset: Any, config: dict[str, Any]) -> list[Any]:
    """[wrapper config, base config] of a wrapping family; options not the wrapper's go to the base."""
    base = config.pop("base", None)
    base_fam = _base_family(fam, base if base is not None else fam.default_base, defaulted=base is None)
    own_names = {f.name for f in dataclasses.fields(fam.config_cls)}
    base_names = {f.name for f in dataclasses.fields(base_fam.config_cls)}
    if own_names & base_names:  # pragma: no cover - a programming error of the two families
        raise TypeError(f"{fam.name} and {base_fam.name} share option names {sorted(own_names & base_names)}")
    specs = options(fam.name, base=base_fam.name)
    _check_preset(fam.name, preset, [*fam.presets, *(p for p in base_fam.presets if p not in fam.presets)])
    for key in config:
        if key not in own_names and key not in base_names:
            raise _unknown(fam.name, key, f"{fam.name} or of its base {base_fam.name}", specs)
    own = {k: v for k, v in config.items() if k in own_names}
    base_given = {k: v for k, v in config.items() if k in base_names}
    return [
        _family_part(fam, preset, {**own, "base": base_fam.name}),
        _family_part(base_fam, preset, base_given),
    ]


def _augment_part(name: str, given: dict[str, Any]) -> AugmentConfig:
    cfg = _checked(name, AugmentConfig, given)
    for key, value, allowed in cfg.violations():
        raise ConfigError(f"{name}.{key}", value, allowed)
    return cfg.normalized()


def resolve_config(name: str, **config: Any) -> Any:
    """Validated config dataclass for ``name``: defaults ← preset ← explicit options (see the module docstring)."""
    fam = family(name)
    preset = config.pop("preset", None)
    augment_given = {k: config.pop(k) for k in AUGMENT_OPTIONS if k in config}
    if fam.wraps_base:
        parts = _wrapping_parts(fam, preset, config)
    else:
        _check_preset(name, preset, list(fam.presets))
        specs = options(name)
        for key in config:
            if key not in specs:
                raise _unknown(name, key, name, specs)
        parts = [_family_part(fam, preset, config)]
    augment = _augment_part(name, augment_given)
    if augment != AugmentConfig():
        parts.append(augment)
    return parts[0] if len(parts) == 1 else combine_configs(parts)


def _same(a: Any, b: Any) -> bool:
    norm = lambda v: tuple(norm(x) for x in v) if isinstance(v, list | tuple) else v  # noqa: E731
    return norm(a) == norm(b)


def preset_of(name: str, options: Mapping[str, Any]) -> str:
    """The size class of a model config (a resolved config does not keep a preset's name: presets are shorthand):
    the first preset whose every value the options hold once resolved (for a wrapping family, in each part that
    defines it); ``default`` when every option any preset sets holds the published default; ``custom`` otherwise."""
    given = {k: v for k, v in options.items() if k != "family" and v is not None}
    options = dataclasses.asdict(resolve_config(name, **given))
    fam = family(name)
    parts = [fam]
    if fam.wraps_base:
        parts.append(_base_family(fam, options.get("base") or fam.default_base, defaulted=not options.get("base")))
    for preset in dict.fromkeys(p for part in parts for p in part.presets):
        defined = [part.presets[preset] for part in parts if preset in part.presets]
        if all(_same(options.get(k), v) for values in defined for k, v in values.items()):
            return preset
    sized = {k: spec.default for part in parts for k, spec in _field_specs(part.config_cls).items()
             if any(k in values for values in part.presets.values())}  # fmt: skip
    return "default" if all(_same(options.get(k), v) for k, v in sized.items()) else "custom"


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


def data_kind(shape: Sequence[int]) -> str:
    """``images`` for (c, h, w) samples, ``vectors`` for (d,)."""
    return "images" if len(shape) == 3 else "vectors"


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
        raise ConfigError(f"{name}.{key}", value, f"meaningful for {kind} ({key} applies to {applies} only)")


def _same(a: Any, b: Any) -> bool:
    def norm(v: Any) -> Any:
        return tuple(v) if isinstance(v, list | tuple) else v

    return norm(a) == norm(b)


def check_shape(name: str, shape: Sequence[int]) -> tuple[int, ...]:
    try:
        shp = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}.shape", shape, "a tuple of positive integers") from None
    if len(shp) not in (1, 3) or any(s <= 0 for s in shp):
        raise ConfigError(f"{name}.shape", shape, "(d,) for vectors or (c, h, w) for images")
    return shp


def build_transform(name: str, shape: tuple[int, ...], cfg: Any) -> Transform:
    """The transform of family ``name`` on ``shape`` from a resolved config (used by wrapping families)."""
    made = family(name).builder(shape, cfg)
    if isinstance(made, Flow):
        raise TypeError(f"{name} builds a whole flow, not a transform another family can wrap")
    return made


def build(name: str, shape: Sequence[int], **config: Any) -> Flow:
    """Build a flow of family ``name`` for samples of ``shape`` ((d,) or (c, h, w)) with published defaults."""
    fam = family(name)
    shp = check_shape(name, shape)
    cfg = resolve_config(name, **config)
    check_applicable(name, config, data_kind(shp))
    augment = augment_part(cfg)
    inner_shape = padded_shape(shp, augment.padding)
    made = fam.builder(inner_shape, cfg)
    flow = made if isinstance(made, Flow) else Flow(made, inner_shape, name=name, config=cfg)
    return augment_flow(flow, shp, augment)
