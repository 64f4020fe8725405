"""Charts drawn on the server as inline SVG: learning curves, a study's history and its Pareto front.

No JavaScript and nothing fetched: each function returns one ``<svg>`` element as ``markupsafe.Markup``. Every
label that reaches the SVG is escaped here, numbers are formatted by us, so the markup is safe to inline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

PALETTE = ("#2f6fb0", "#d9622b", "#3a9a5b", "#8a4fb8", "#b8860b", "#c23b5a", "#4a8c9e", "#6b6b6b")
WIDTH, HEIGHT = 520, 250
LEFT, RIGHT, TOP, BOTTOM = 62, 12, 38, 34

Point = tuple[float, float]


def _finite(points: Sequence[Point]) -> list[Point]:
    return [(float(x), float(y)) for x, y in points if math.isfinite(x) and math.isfinite(y)]


def _tick(value: float) -> str:
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) < 1e7:
        return str(int(value))
    magnitude = abs(value)
    if magnitude >= 1e5 or magnitude < 1e-3:
        return f"{value:.2e}"
    return f"{value:.4g}"


def _bounds(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    if low == high:
        pad = abs(low) * 0.05 or 1.0
        return low - pad, high + pad
    pad = (high - low) * 0.05
    return low - pad, high + pad


class _Frame:
    """Maps data coordinates into the plotting area and draws the axes."""

    def __init__(self, xs: Sequence[float], ys: Sequence[float]) -> None:
        self.x0, self.x1 = _bounds(xs)
        self.y0, self.y1 = _bounds(ys)
        self.integer_x = all(float(x).is_integer() for x in xs)  # steps, trial numbers: ticks on whole numbers

    def x_ticks(self) -> list[float]:
        if not self.integer_x:
            return [self.x0 + (self.x1 - self.x0) * i / 4 for i in range(5)]
        step = max(1, math.ceil((self.x1 - self.x0) / 5))
        first = math.ceil(self.x0 / step) * step
        return [float(x) for x in range(first, math.floor(self.x1) + 1, step)]

    def px(self, x: float) -> float:
        return LEFT + (x - self.x0) / (self.x1 - self.x0) * (WIDTH - LEFT - RIGHT)

    def py(self, y: float) -> float:
        return HEIGHT - BOTTOM - (y - self.y0) / (self.y1 - self.y0) * (HEIGHT - TOP - BOTTOM)

    def axes(self, x_label: str, y_label: str) -> list[str]:
        bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
        parts = [
            f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}"/>',
            f'<line class="axis" x1="{LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}"/>',
        ]
        for i in range(5):
            y = self.y0 + (self.y1 - self.y0) * i / 4
            py = self.py(y)
            parts.append(f'<line class="grid" x1="{LEFT}" y1="{py:.1f}" x2="{right}" y2="{py:.1f}"/>')
            parts.append(f'<text class="tick" x="{LEFT - 4}" y="{py + 3:.1f}" text-anchor="end">{_tick(y)}</text>')
        for x in self.x_ticks():
            px = self.px(x)
            parts.append(f'<text class="tick" x="{px:.1f}" y="{bottom + 13}" text-anchor="middle">{_tick(x)}</text>')
        parts.append(
            f'<text class="label" x="{(LEFT + right) / 2:.0f}" y="{HEIGHT - 4}" text-anchor="middle">'
            f"{escape(x_label)}</text>"
        )
        parts.append(f'<text class="label" x="{LEFT}" y="{TOP - 8}">{escape(y_label)}</text>')
        return parts


def _svg(title: str, body: list[str]) -> Markup:
    return Markup(
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
        + "".join(body)
        + "</svg>"
    )


def _legend(labels: Sequence[str]) -> list[str]:
    parts = []
    x = LEFT + 8
    for i, label in enumerate(labels[:8]):
        colour = PALETTE[i % len(PALETTE)]
        parts.append(f'<rect x="{x}" y="7" width="10" height="3" fill="{colour}"/>')
        parts.append(f'<text class="legend" x="{x + 13}" y="12">{escape(label[:24])}</text>')
        x += 16 + 6.2 * min(len(label), 24)
    return parts


def line_chart(
    title: str, series: Sequence[tuple[str, Sequence[Point]]], *, x_label: str = "step", y_label: str = ""
) -> Markup | None:
    """One line per ``(label, points)``; None when no series has a finite point."""
    clean = [(label, sorted(_finite(points))) for label, points in series]
    clean = [(label, points) for label, points in clean if points]
    if not clean:
        return None
    xs = [x for _, points in clean for x, _ in points]
    ys = [y for _, points in clean for _, y in points]
    frame = _Frame(xs, ys)
    body = frame.axes(x_label, y_label or title)
    for i, (_, points) in enumerate(clean):
        colour = PALETTE[i % len(PALETTE)]
        coords = " ".join(f"{frame.px(x):.1f},{frame.py(y):.1f}" for x, y in points)
        if len(points) == 1:
            x, y = points[0]
            body.append(f'<circle cx="{frame.px(x):.1f}" cy="{frame.py(y):.1f}" r="3" fill="{colour}"/>')
        else:
            body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{coords}"/>')
    body += _legend([label for label, _ in clean])
    return _svg(title, body)


def scatter_chart(
    title: str,
    points: Sequence[Point],
    *,
    highlight: Sequence[Point] = (),
    line: Sequence[Point] = (),
    x_label: str = "",
    y_label: str = "",
    legend: Sequence[str] = (),
) -> Markup | None:
    """Points (grey-blue), highlighted points (orange, e.g. the best or the Pareto front) and an optional step line
    (e.g. the best value so far); None without a finite point."""
    pts, hl, ln = _finite(points), _finite(highlight), sorted(_finite(line))
    every = pts + hl + ln
    if not every:
        return None
    frame = _Frame([x for x, _ in every], [y for _, y in every])
    body = frame.axes(x_label, y_label)
    if len(ln) > 1:
        coords = " ".join(f"{frame.px(x):.1f},{frame.py(y):.1f}" for x, y in ln)
        body.append(f'<polyline fill="none" stroke="{PALETTE[1]}" stroke-width="1.4" points="{coords}"/>')
    for x, y in pts:
        body.append(f'<circle cx="{frame.px(x):.1f}" cy="{frame.py(y):.1f}" r="3" fill="{PALETTE[0]}"/>')
    for x, y in hl:
        body.append(
            f'<circle cx="{frame.px(x):.1f}" cy="{frame.py(y):.1f}" r="4.5" fill="none" stroke="{PALETTE[1]}" '
            'stroke-width="2"/>'
        )
    body += _legend(list(legend))
    return _svg(title, body)
