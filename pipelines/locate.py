"""Where a problem is: map a location tuple to ``file:line`` (or the ``--set`` option that caused it).

A :class:`Locator` remembers the YAML line of every key and list item, and which paths came from
``--set`` options. For a run of the matrix, a path set by one of the run's matrix axes points at the line
of that axis's value; otherwise the line of the longest existing prefix is used (so a missing field points
at its parent mapping).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import Invalid, PipelineError, format_path


@dataclass
class Locator:
    """Source name, YAML lines and ``--set`` origins of one loaded pipeline."""

    source: str = "<pipeline>"
    lines: dict[tuple[Any, ...], int] = field(default_factory=dict)
    sets: dict[tuple[Any, ...], str] = field(default_factory=dict)

    def where(self, loc: tuple[Any, ...], combo: dict[str, tuple[int, Any]] | None = None) -> str:
        """``toy.yaml:7`` for ``loc`` (within the matrix run ``combo``), or ``--set path=value:``."""
        for set_loc, text in self.sets.items():
            if loc[: len(set_loc)] == set_loc:
                return f"--set {text}:"
        for axis, (index, value) in (combo or {}).items():
            if axis == "config" and isinstance(value, dict) and loc and loc[0] in value:  # sections set together
                return self._line(("matrix", axis, index, *loc))
            axis_loc = tuple(axis.split("."))
            if loc[: len(axis_loc)] == axis_loc:
                return self._line(("matrix", axis, index, *loc[len(axis_loc) :]))
        return self._line(loc)

    def _line(self, loc: tuple[Any, ...]) -> str:
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.lines:
                return f"{self.source}:{self.lines[loc[:end]]}"
        return self.source

    def error(self, invalid: Invalid, combo: dict[str, tuple[int, Any]] | None = None) -> PipelineError:
        """The one-line :class:`PipelineError` for ``invalid``, naming the matrix values of ``combo``."""
        where = f"{self.source}:{invalid.line}" if invalid.line else self.where(invalid.loc, combo)
        problem = invalid.problem
        if combo:
            problem += " (matrix: " + ", ".join(f"{k}={show(v)}" for k, (_, v) in combo.items()) + ")"
        return PipelineError(where, format_path(invalid.loc), problem)


def show(value: Any) -> str:
    """Compact display of a matrix value: strings bare, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "))
