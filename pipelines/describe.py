"""Turn a pydantic ``ValidationError`` into an :class:`Invalid` (location tuple + one-line problem).

Only the first error is reported. Its location is cut back to a path that exists in the input (pydantic
appends union-member tags such as ``"literal['auto']"``), and the allowed values are described from the
field's annotation, so that a union reports every alternative at once.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from .errors import Invalid, format_path
from .schema import NAME_PATTERN

_RANGE = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
_BOUND_ATTRS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))


def from_validation_error(exc: ValidationError, data: Any, root: type[BaseModel], prefix: tuple = ()) -> Invalid:
    """The first error of ``exc`` (raised validating ``data`` as ``root``), located under ``prefix``."""
    err = exc.errors(include_url=False)[0]
    kind, ctx = err["type"], err.get("ctx") or {}
    loc = _real_loc(tuple(err["loc"]), data, kind)
    annotation, metadata = _annotation_at(root, loc)
    full = (*prefix, *loc)
    value = err.get("input")
    if kind == "missing":
        return Invalid(full, "required field missing")
    if kind == "extra_forbidden":
        owner = _strip(_annotation_at(root, loc[:-1])[0], drop_none=True)
        section = format_path((*prefix, *loc[:-1])) or "the pipeline"
        fields = ", ".join(owner.model_fields) if isinstance(owner, type) and issubclass(owner, BaseModel) else "?"
        return Invalid(full, f"{loc[-1]!r} is not a field of {section}; allowed: {fields}")
    if kind in _RANGE:
        rule = _bounds(metadata) or f"{_RANGE[kind]} {next(iter(ctx.values()))}"
        return Invalid(full, f"{value!r} is out of range: must be {rule}")
    if kind in ("too_short", "too_long"):
        if loc[:1] == ("matrix",) and not value:
            return Invalid(full, f"{value!r} is empty; a matrix axis needs at least one value")
        return Invalid(full, f"{value!r} has {ctx.get('actual_length')} items; {_length_rule(metadata)}")
    if kind == "finite_number":
        return Invalid(full, f"{value!r} is not a finite number")
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == NAME_PATTERN:
        return Invalid(full, f"{value!r} is not a valid name: use only letters, digits, '_', '.' and '-'")
    if kind == "value_error" and "error" in ctx:  # a section's own rule across its fields: its message says it all
        return Invalid(full, str(ctx["error"]))
    if annotation is not None:
        return Invalid(full, f"{value!r} is not {describe(annotation)}")
    return Invalid(full, f"{value!r}: {err['msg']}")


def describe(annotation: Any) -> str:
    """Human description of a type: ``one of: adam, adamax``, ``an integer``, ``auto or a boolean``."""
    annotation = _strip(annotation)
    origin = typing.get_origin(annotation)
    if origin is Literal:
        args = typing.get_args(annotation)
        return str(args[0]) if len(args) == 1 else "one of: " + ", ".join(str(a) for a in args)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(annotation)
        if any(typing.get_origin(_strip(a)) is Literal for a in args):
            args = tuple(a for a in args if a is not type(None))  # null only means "not set here"
        return " or ".join(describe(a) for a in args)
    if origin in (list, tuple):
        inner = describe(typing.get_args(annotation)[0])
        return "a list of values" if inner == "valid" else f"a list of {_plural(inner)}"
    if origin is dict:
        return "a mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a mapping of " + ", ".join(annotation.model_fields)
    names = {type(None): "null", bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    return names.get(annotation, "valid") if isinstance(annotation, type) else "valid"


def _plural(text: str) -> str:
    for article in ("an ", "a "):
        if text.startswith(article):
            return text[len(article) :] + "s"
    return text


def _real_loc(loc: tuple, data: Any, kind: str) -> tuple:
    """Longest prefix of ``loc`` that exists in ``data`` (plus the missing key for ``missing``)."""
    node, out = data, []
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
        else:
            if kind == "missing" and isinstance(node, dict):
                out.append(part)
            break
        out.append(part)
    return tuple(out)


def _annotation_at(root: type[BaseModel], loc: tuple) -> tuple[Any, list[Any]]:
    """The annotation at ``loc`` under ``root`` and its constraint objects (``Gt(0)``, ``MinLen(2)``)."""
    annotation: Any = root
    metadata: list[Any] = []
    for part in loc:
        annotation = _strip(annotation, drop_none=True)
        origin = typing.get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(part)
            if field is None:
                return None, []
            annotation, metadata = field.annotation, list(field.metadata)
        elif origin is list and isinstance(part, int):
            annotation, metadata = typing.get_args(annotation)[0], []
        elif origin is dict:
            annotation, metadata = typing.get_args(annotation)[1], []
        else:
            return None, []
    return annotation, [*metadata, *_metadata(annotation)]


def _strip(annotation: Any, *, drop_none: bool = False) -> Any:
    """Remove ``Annotated`` wrappers (and ``| None`` when ``drop_none``)."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if drop_none and typing.get_origin(annotation) in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _strip(args[0])
    return annotation


def _metadata(annotation: Any) -> list[Any]:
    """Constraint objects attached by ``Annotated[..., Field(...)]``, also inside ``X | None``."""
    found: list[Any] = []
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        for arg in typing.get_args(annotation):
            found += _metadata(arg)
    elif typing.get_origin(annotation) is Annotated:
        for extra in typing.get_args(annotation)[1:]:
            found += list(extra.metadata) if isinstance(extra, FieldInfo) else [extra]
    return found


def _bounds(metadata: list[Any]) -> str:
    rules = [f"{sign} {getattr(m, attr)}" for m in metadata for attr, sign in _BOUND_ATTRS if hasattr(m, attr)]
    return " and ".join(rules)


def _length_rule(metadata: list[Any]) -> str:
    lo = next((m.min_length for m in metadata if hasattr(m, "min_length")), None)
    hi = next((m.max_length for m in metadata if hasattr(m, "max_length")), None)
    if lo is not None and lo == hi:
        return f"expected exactly {lo}"
    if hi is None:
        return f"expected at least {lo}"
    return f"expected between {lo or 0} and {hi}"
