"""The matrix: check its paths, enumerate its combinations and apply one to a raw config.

A path is ``section.field`` (``train.steps``, ``dataset.name``), ``model.<option>`` (checked per run
against the family) or a whole section (``model``) whose values are mappings merged into that section —
the way to vary several options together, e.g. one entry per family with its own sizes — or ``config``, whose values
are mappings of sections (``{model: {family: glow}, train: {optimizer: adamax}}``) merged into each section: the way
to vary options of several sections together, e.g. one entry per family with its published training protocol.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from .errors import Invalid
from .hashing import canonical_json
from .schema import SECTIONS

Combo = dict[str, tuple[int, Any]]
CONFIG_AXIS = "config"  # an axis whose values set several sections at once


def allowed_paths() -> str:
    """Human list of the path forms a matrix (or ``--set``) accepts."""
    forms = [f"{s}.<option>" if s == "model" else f"{s}.<field>" for s in SECTIONS]
    return ", ".join([*forms, f"a whole section, or {CONFIG_AXIS} (mappings of sections)"])


def check_path(path: str, loc: tuple[Any, ...]) -> tuple[str, ...]:
    """Split a dotted matrix path and check it names a field of the schema; raises :class:`Invalid`."""
    parts = tuple(path.split(".")) if isinstance(path, str) else ()
    if parts == (CONFIG_AXIS,):
        return parts
    if not parts or parts[0] not in SECTIONS or len(parts) > 2 or not all(parts):
        raise Invalid(loc, f"{path!r} is not a path of the schema; allowed: {allowed_paths()}")
    if len(parts) == 2 and parts[0] != "model":
        section: type[BaseModel] = SECTIONS[parts[0]]
        if parts[1] not in section.model_fields:
            fields = ", ".join(section.model_fields)
            raise Invalid(loc, f"{parts[1]!r} is not a field of {parts[0]}; allowed: {fields}")
    return parts


def check_matrix(matrix: dict[str, list[Any]]) -> None:
    """Every axis names a schema path, section axes hold mappings and no axis repeats a value."""
    for axis, values in matrix.items():
        parts = check_path(axis, ("matrix", axis))
        seen: set[str] = set()
        for index, value in enumerate(values):
            if len(parts) == 1 and not isinstance(value, dict):
                raise Invalid(("matrix", axis, index), f"{value!r} is not a mapping of {axis} fields")
            if parts == (CONFIG_AXIS,):
                _check_config_value(value, ("matrix", axis, index))
            key = canonical_json(value)
            if key in seen:
                raise Invalid(("matrix", axis, index), f"{value!r} repeats an earlier value of this axis")
            seen.add(key)


def _check_config_value(value: dict[str, Any], loc: tuple[Any, ...]) -> None:
    for section, fields in value.items():
        if section not in SECTIONS:
            raise Invalid((*loc, section), f"{section!r} is not a section; allowed: {', '.join(SECTIONS)}")
        if not isinstance(fields, dict):
            raise Invalid((*loc, section), f"{fields!r} is not a mapping of {section} fields")


def combinations(matrix: dict[str, list[Any]]) -> Iterator[Combo]:
    """Cartesian product, lazily: axes in the matrix's order (first outermost), values in list order."""
    axes = list(matrix)
    indexed = [list(enumerate(matrix[a])) for a in axes]
    for picks in itertools.product(*indexed):
        yield dict(zip(axes, picks, strict=True))


def set_path(raw: dict[str, Any], path: str, value: Any) -> None:
    """Set ``section.field`` in ``raw`` (or merge a mapping into a whole section) in place."""
    if path == CONFIG_AXIS:
        for name, fields in value.items():
            set_path(raw, name, fields)
        return
    parts = path.split(".")
    section = raw.setdefault(parts[0], {})
    if len(parts) == 1:
        raw[parts[0]] = {**section, **copy.deepcopy(value)}
    else:
        section[parts[1]] = copy.deepcopy(value)


def flat_overrides(combo: Combo) -> dict[str, Any]:
    """The matrix values of one run as ``{dotted.path: value}`` (section mappings flattened)."""
    out: dict[str, Any] = {}
    for axis, (_, value) in combo.items():
        if axis == CONFIG_AXIS:
            out.update(flat_overrides({name: (0, fields) for name, fields in value.items()}))
        elif "." not in axis and isinstance(value, dict):
            out.update({f"{axis}.{k}": v for k, v in value.items()})
        else:
            out[axis] = value
    return out
