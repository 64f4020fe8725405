"""Option declarations: every model option is declared once, as a dataclass field made by :func:`option`.

A declaration holds the type (the field's annotation), the default, the allowed range (``ge``/``gt``/``le``/``lt``,
applied to every item of a list option), a one-line doc, the kind of data it means something for (a doc starting
``images:`` or ``vectors:``), and — for the options worth tuning — a default search range (:class:`Search`) and
the search spaces it belongs to (``lipschitz``, ``estimator``, ``activation``, ``architecture``). Everything else is
derived from the declarations: the checks (:func:`check_value`, the same one-line :class:`ConfigError` for Python,
YAML and the CLI), ``nflab models`` tables, the JSON Schema (:func:`json_schema`) and the tuner's search spaces.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

Loc = tuple[str | int, ...]


def dotted(loc: Loc) -> str:
    """``('hidden', 1)`` → ``hidden[1]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class ConfigError(ValueError):
    """A bad model option: where it is (``loc``, relative to the family's options), the value and what is allowed.

    ``str()`` is one line ``family.option: value is not allowed``; ``family`` is filled in by the registry.
    """

    def __init__(self, loc: Loc | str, value: Any, allowed: str, *, family: str | None = None) -> None:
        self.loc: Loc = tuple(loc.split(".")) if isinstance(loc, str) else tuple(loc)
        self.value, self.allowed, self.family = value, allowed, family
        super().__init__(self._text())

    @property
    def path(self) -> str:
        return dotted((self.family, *self.loc)) if self.family else dotted(self.loc)

    def _text(self) -> str:
        return f"{self.path}: {self.value!r} is not {self.allowed}"

    def within(self, family: str) -> ConfigError:
        """This error placed under ``family`` (unless it is already placed)."""
        if self.family is None and (not self.loc or self.loc[0] != family):
            self.family = family
            self.args = (self._text(),)
        return self


@dataclass(frozen=True)
class Search:
    """A default search range of a tunable option: numbers in [low, high] (``log``: log-uniform) or ``choices``."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class OptionSpec:
    """One declared option (see the module docstring)."""

    name: str
    annotation: Any
    default: Any
    doc: str
    applies: str | None = None  # "images" / "vectors": meaningful for that kind of data only; None: both
    bounds: tuple[tuple[str, float], ...] = ()  # (("ge", 1),): every number (or list item) must satisfy them
    search: Search | None = None
    spaces: tuple[str, ...] = ()

    @property
    def allowed(self) -> str:
        return allowed_text(self.annotation, self.bounds)

    @property
    def tunable(self) -> bool:
        return self.search is not None


SPACES = ("lipschitz", "estimator", "activation", "architecture", "solver")
_SIGNS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def option(
    default: Any,
    doc: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    search: Search | None = None,
    spaces: tuple[str, ...] = (),
) -> Any:
    """A dataclass field declaring one option (module docstring). A doc starting ``images:`` or ``vectors:`` (and
    not naming the other kind) declares the option for that kind of data only: it is refused for the other."""
    applies = next((k for k in ("images", "vectors") if doc.startswith(f"{k}:")), None)
    if applies is not None and f"{'vectors' if applies == 'images' else 'images'}:" in doc:
        applies = None
    bounds = tuple((k, v) for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None)
    unknown = set(spaces) - set(SPACES)
    if unknown:  # pragma: no cover - a declaration error
        raise TypeError(f"unknown search spaces {sorted(unknown)}; allowed: {SPACES}")
    if spaces and search is None:
        search = Search()  # a categorical or boolean option: its choices come from the type
    metadata = {"doc": doc, "applies": applies, "bounds": bounds, "search": search, "spaces": tuple(spaces)}
    if isinstance(default, list | tuple):
        return field(default=tuple(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def specs_of(config_cls: type) -> dict[str, OptionSpec]:
    """The declared options of a config dataclass, in field order (a fresh dict each call)."""
    return dict(_specs_of(config_cls))


@functools.cache
def _specs_of(config_cls: type) -> dict[str, OptionSpec]:
    hints = typing.get_type_hints(config_cls)
    out = {}
    for f in dataclasses.fields(config_cls):
        m = f.metadata
        out[f.name] = OptionSpec(
            f.name,
            hints[f.name],
            f.default,
            m.get("doc", ""),
            m.get("applies"),
            m.get("bounds", ()),
            m.get("search"),
            m.get("spaces", ()),
        )
    return out


def describe_type(annotation: Any) -> str:
    """``one of: a, b``, ``an integer``, ``a list of integers``, ``an integer or null``."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of: " + ", ".join(str(a) for a in typing.get_args(annotation))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(describe_type(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    if origin is tuple:
        return f"a non-empty list of {describe_type(typing.get_args(annotation)[0])[2:].lstrip()}s"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(annotation, str(annotation))


def allowed_text(annotation: Any, bounds: tuple[tuple[str, float], ...] = ()) -> str:
    """What a value of ``annotation`` within ``bounds`` is: ``an integer >= 1``, ``a number > 0 or null``."""
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(allowed_text(a, bounds) for a in typing.get_args(annotation))
    text = describe_type(annotation)
    numeric = annotation in (int, float) or (origin is tuple and typing.get_args(annotation)[0] in (int, float))
    return f"{text} {bounds_text(bounds)}" if bounds and numeric else text


def bounds_text(bounds: tuple[tuple[str, float], ...]) -> str:
    return " and ".join(f"{_SIGNS[k]} {v:g}" for k, v in bounds)


def check_value(loc: Loc, annotation: Any, value: Any, bounds: tuple[tuple[str, float], ...] = ()) -> Any:
    """``value`` checked against the type ``annotation`` and ``bounds`` (lists: per item); tuples for lists.

    Raises :class:`ConfigError` at ``loc`` (with the list index for a bad item) naming what is allowed.
    """
    origin = typing.get_origin(annotation)
    allowed = allowed_text(annotation, bounds)
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in typing.get_args(annotation)):
            return value
        raise ConfigError(loc, value, allowed)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in typing.get_args(annotation):
            return None
        errors = []
        for arg in typing.get_args(annotation):
            if arg is type(None):
                continue
            try:
                return check_value(loc, arg, value, bounds)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1 and errors[0].loc != loc:
            raise errors[0]  # a bad item of the one list alternative: keep its index
        raise ConfigError(loc, value, allowed)
    if annotation is type(None):
        if value is None:
            return None
        raise ConfigError(loc, value, "null")
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        if not isinstance(value, list | tuple) or not value:
            raise ConfigError(loc, value, allowed)
        return tuple(check_value((*loc, i), item, v, bounds) for i, v in enumerate(value))
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation in (int, float):
        number = isinstance(value, int) if annotation is int else isinstance(value, int | float)
        if number and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(loc, value, "a finite number")
            for key, limit in bounds:
                if not _within(key, value, limit):
                    raise ConfigError(loc, value, allowed)
            return float(value) if annotation is float else value
    elif annotation is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a family declared an unsupported option type
        raise TypeError(f"unsupported option type {annotation!r} at {dotted(loc)}")
    raise ConfigError(loc, value, allowed)


def _within(key: str, value: float, limit: float) -> bool:
    return {"ge": value >= limit, "gt": value > limit, "le": value <= limit, "lt": value < limit}[key]


def choices_of(annotation: Any) -> tuple[Any, ...] | None:
    """The finite values of a Literal / bool option (``None`` members left out), else None."""
    args = typing.get_args(annotation) if typing.get_origin(annotation) in (types.UnionType, typing.Union) else ()
    inner = [a for a in args if a is not type(None)] or [annotation]
    if len(inner) != 1:
        return None
    if typing.get_origin(inner[0]) is Literal:
        return typing.get_args(inner[0])
    return (False, True) if inner[0] is bool else None


def json_type(annotation: Any, bounds: tuple[tuple[str, float], ...] = ()) -> dict[str, Any]:
    """The JSON Schema of one option type."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return {"enum": list(typing.get_args(annotation))}
    if origin in (types.UnionType, typing.Union):
        return {"anyOf": [json_type(a, bounds) for a in typing.get_args(annotation)]}
    if annotation is type(None):
        return {"type": "null"}
    if origin is tuple:
        return {"type": "array", "minItems": 1, "items": json_type(typing.get_args(annotation)[0], bounds)}
    kind = {bool: "boolean", int: "integer", float: "number", str: "string"}[annotation]
    out: dict[str, Any] = {"type": kind}
    if annotation in (int, float):
        names = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}
        out.update({names[k]: v for k, v in bounds})
    return out
