"""Argument checks shared by the samplers."""

from __future__ import annotations

import operator


def positive_int(n: object, what: str = "n") -> int:
    """Return ``n`` as an int if it is a positive integer (bools rejected), else raise ValueError."""
    if isinstance(n, bool):
        raise ValueError(f"{what} must be a positive int, got {n!r}")
    try:
        value = operator.index(n)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{what} must be a positive int, got {n!r}") from None
    if value <= 0:
        raise ValueError(f"{what} must be a positive int, got {n!r}")
    return value
