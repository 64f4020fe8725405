"""The one path by which nflab prints through rich: user strings are text, never markup.

rich reads ``[...]`` inside a ``str`` as markup, so a config label ``realnvp [efd47265]``, a pipeline error
naming ``[128, 128]`` or a run's error message would lose their bracketed parts. Rule: every string that reaches
rich from data (labels, names, errors, paths) becomes a :class:`rich.text.Text` (or is passed through
:func:`rich.markup.escape` where a markup template is built); styling is nflab's own and given as a ``style``,
never written into a string. :class:`SafeTable` applies the rule to every cell, header and title, and
:func:`make_console` returns a console that prints plain strings literally (``markup=False``).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

__all__ = ["SafeTable", "escape", "make_console", "plain", "styled"]


def plain(value: Any, style: str = "") -> Text:
    """``value`` as literal text (``None`` → empty), with nflab's ``style``; ``Text`` passes through unchanged."""
    if isinstance(value, Text):
        return value
    return Text("" if value is None else str(value), style=style)


def styled(*parts: tuple[Any, str] | Any) -> Text:
    """Literal text assembled from parts: ``(value, style)`` pairs or bare values (unstyled)."""
    out = Text()
    for part in parts:
        value, style = part if isinstance(part, tuple) else (part, "")
        out.append_text(plain(value, style))
    return out


def _cell(value: Any) -> RenderableType:
    return plain(value) if value is None or isinstance(value, str | int | float) else value


class SafeTable(Table):
    """A rich ``Table`` whose title, caption, headers and string cells are literal text (see module docstring)."""

    def __init__(self, *headers: Any, title: Any = None, caption: Any = None, **kwargs: Any) -> None:
        super().__init__(
            *(plain(h) if isinstance(h, str) else h for h in headers),
            title=None if title is None else plain(title),
            caption=None if caption is None else plain(caption),
            **kwargs,
        )

    def add_column(self, header: Any = "", *args: Any, **kwargs: Any) -> None:
        super().add_column(plain(header) if isinstance(header, str) else header, *args, **kwargs)

    def add_row(self, *renderables: Any, **kwargs: Any) -> None:
        super().add_row(*(_cell(r) for r in renderables), **kwargs)


def make_console(**kwargs: Any) -> Console:
    """A console that prints strings literally (``markup=False``); style through ``Text``/``styled``."""
    return Console(markup=False, **kwargs)
