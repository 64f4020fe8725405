"""The family registry: ``available()``, ``options(name)`` and ``build(name, shape, **config)``.

Each family registers a config dataclass whose defaults are the published ones, optional named presets
(smaller, explicit), and a builder ``(shape, config) -> Transform``. Options are type-checked here so that
every front end (Python, YAML pipelines, the CLI) reports the same one-line error.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .flow import Flow
from .transform import Transform


class ConfigError(ValueError):
    """A bad model option: names the option, the value and what is allowed."""

    def __init__(self, path: str, value: Any, allowed: str) -> None:
        self.path, self.value, self.allowed = path, value, allowed
        super().__init__(f"{path}: {value!r} is not {allowed}")


@dataclass(frozen=True)
class Family:
    name: str
    config_cls: type
    builder: Callable[[tuple[int, ...], Any], Transform]
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    summary: str = ""


_FAMILIES: dict[str, Family] = {}


def register(
    name: str, config_cls: type, *, presets: dict[str, dict[str, Any]] | None = None, summary: str = ""
) -> Callable[[Callable[[tuple[int, ...], Any], Transform]], Callable[[tuple[int, ...], Any], Transform]]:
    """Decorator registering a family builder under ``name``."""

    def wrap(
        builder: Callable[[tuple[int, ...], Any], Transform],
    ) -> Callable[[tuple[int, ...], Any], Transform]:
        _FAMILIES[name] = Family(name, config_cls, builder, dict(presets or {}), summary)
        return builder

    return wrap


def available() -> list[str]:
    """Names of the registered flow families, in registration order."""
    return list(_FAMILIES)


def family(name: str) -> Family:
    if name not in _FAMILIES:
        raise ConfigError("family", name, f"one of: {', '.join(available())}")
    return _FAMILIES[name]


@dataclass(frozen=True)
class OptionSpec:
    name: str
    annotation: Any
    default: Any
    doc: str

    @property
    def allowed(self) -> str:
        return describe_type(self.annotation)


def options(name: str) -> dict[str, OptionSpec]:
    """The options of a family with their types, defaults and one-line descriptions (plus ``preset``)."""
    fam = family(name)
    hints = typing.get_type_hints(fam.config_cls)
    specs = {
        f.name: OptionSpec(f.name, hints[f.name], f.default, f.metadata.get("doc", ""))
        for f in dataclasses.fields(fam.config_cls)
    }
    if fam.presets:
        specs["preset"] = OptionSpec("preset", Literal[tuple(fam.presets)], None, "a named smaller configuration")
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
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a family declared an unsupported option type
        raise TypeError(f"unsupported option type {annotation!r} for {path}")
    raise ConfigError(path, value, describe_type(annotation))


def resolve_config(name: str, **config: Any) -> Any:
    """Validated config dataclass for ``name``: defaults ← preset ← explicit options."""
    fam = family(name)
    specs = options(name)
    preset = config.pop("preset", None)
    values: dict[str, Any] = {}
    if preset is not None:
        coerce_value(f"{name}.preset", specs["preset"].annotation, preset)
        values.update(fam.presets[preset])
    for key, value in config.items():
        if key not in specs or key == "preset":
            raise ConfigError(f"{name}.{key}", key, f"an option of {name}; allowed: {', '.join(specs)}")
        values[key] = value
    checked = {k: coerce_value(f"{name}.{k}", specs[k].annotation, v) for k, v in values.items()}
    cfg = fam.config_cls(**checked)
    validate = getattr(cfg, "validate", None)
    if validate is not None:
        validate()
    return cfg


def check_shape(name: str, shape: Sequence[int]) -> tuple[int, ...]:
    try:
        shp = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}.shape", shape, "a tuple of positive integers") from None
    if len(shp) not in (1, 3) or any(s <= 0 for s in shp):
        raise ConfigError(f"{name}.shape", shape, "(d,) for vectors or (c, h, w) for images")
    return shp


def build(name: str, shape: Sequence[int], **config: Any) -> Flow:
    """Build a flow of family ``name`` for samples of ``shape`` ((d,) or (c, h, w)) with published defaults."""
    fam = family(name)
    shp = check_shape(name, shape)
    cfg = resolve_config(name, **config)
    transform = fam.builder(shp, cfg)
    return Flow(transform, shp, name=name, config=cfg)
