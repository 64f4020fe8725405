"""``PipelineError``: every problem with a pipeline, as one line that names where it is.

The message has the shape ``toy.yaml:7 model.family: 'monotne' is not one of: glow, maf, nice, realnvp``:
the file and YAML line (or the ``--set`` option that caused it), the dotted path, the bad value and what is
allowed. It never spans lines, so the CLI can print it as is and exit with status 2.
"""

from __future__ import annotations

from typing import Any


def one_line(text: str) -> str:
    """Collapse every run of whitespace (newlines included) into one space."""
    return " ".join(str(text).split())


def format_path(loc: tuple[Any, ...]) -> str:
    """Dotted display of a location tuple: ``('train', 'betas', 1)`` → ``train.betas[1]``."""
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class Invalid(ValueError):
    """A problem found while validating, before it is given a place: location tuple + problem text."""

    def __init__(self, loc: tuple[Any, ...], problem: str, *, line: int | None = None) -> None:
        self.loc, self.problem, self.line = tuple(loc), one_line(problem), line
        super().__init__(f"{format_path(self.loc)}: {self.problem}")


class PipelineError(ValueError):
    """A pipeline that cannot be loaded or expanded; ``str(err)`` is one line ``where path: problem``.

    Attributes: ``where`` (``"toy.yaml:7"`` or ``"--set train.steps=abc:"``), ``path`` (dotted, may be
    empty) and ``problem`` (the bad value and what is allowed).
    """

    def __init__(self, where: str, path: str, problem: str) -> None:
        self.where, self.path, self.problem = one_line(where), one_line(path), one_line(problem)
        where = self.where.removesuffix(":")
        head = f"{self.where} {self.path}:" if self.path else f"{where}:"
        super().__init__(one_line(f"{head} {self.problem}"))
