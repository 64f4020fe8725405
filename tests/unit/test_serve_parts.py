"""Pieces of ``nflab serve`` that need no store: the SVG charts, the bind rule, the token's session value."""

from __future__ import annotations

import math

import pytest

from nflab.serve import BindRefused, check_bind, is_loopback
from nflab.serve.app import session_value
from nflab.serve.svg import line_chart, scatter_chart


def test_line_chart_escapes_labels_and_skips_non_finite_points() -> None:
    chart = line_chart("loss <b>", [("seed <0>", [(0, 1.0), (1, math.nan), (2, 0.5)]), ("empty", [])])
    assert chart is not None
    text = str(chart)
    assert text.startswith("<svg") and text.endswith("</svg>")
    assert "<b>" not in text and "&lt;b&gt;" in text and "seed &lt;0&gt;" in text
    assert text.count("<polyline") == 1 and "nan" not in text.lower().replace("nan=", "")
    assert line_chart("nothing", [("a", [(0, math.inf)])]) is None


def test_line_chart_one_point_and_constant_values() -> None:
    chart = str(line_chart("flat", [("a", [(3, 2.0)])]))
    assert "<circle" in chart and "<polyline" not in chart


def test_scatter_chart_with_highlight_and_line() -> None:
    chart = str(scatter_chart("history", [(0, 3.0), (1, 2.0)], highlight=[(1, 2.0)], line=[(0, 3.0), (1, 2.0)]))
    assert chart.count("<circle") == 3 and "<polyline" in chart
    assert scatter_chart("none", []) is None


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.9", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_needs_no_token(host: str) -> None:
    assert is_loopback(host)
    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.org", ""])
def test_anything_else_needs_a_token(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(BindRefused, match="NFLAB_SERVE_TOKEN"):
        check_bind(host, None)
    check_bind(host, "a-token")


def test_session_value_is_not_the_token() -> None:
    value = session_value("secret-token")
    assert "secret-token" not in value and len(value) == 64 and value == session_value("secret-token")
    assert value != session_value("secret-token2")


def test_study_charts_history_and_pareto_front() -> None:
    from nflab.serve.views import _study_charts

    def trial(n: int, values: list[float] | None, state: str = "complete") -> dict:
        return {"number": n, "state": state, "values": values}

    shown = {
        "objectives": ["nats", "<params>"],
        "directions": ["minimize", "minimize"],
        "trials": [trial(0, [3.0, 10.0]), trial(1, [2.5, 30.0]), trial(2, [2.9, 5.0]), trial(3, None, "fail")],
        "best": [trial(1, [2.5, 30.0]), trial(2, [2.9, 5.0])],
    }
    charts = _study_charts(shown)
    assert set(charts) == {"history", "pareto"}
    pareto = str(charts["pareto"])
    assert pareto.count('stroke-width="2"') == 2 and "&lt;params&gt;" in pareto  # the front, escaped labels
    single = _study_charts({**shown, "directions": ["minimize"], "best": shown["best"][:1]})
    assert set(single) == {"history"}
    assert _study_charts({**shown, "trials": [trial(0, None, "fail")]}) == {}


def test_memo_recomputes_when_the_marker_moves_and_can_serve_the_old_value_meanwhile() -> None:
    import threading

    from nflab.serve.views import Views

    views = Views(None, None, min_refresh_s=0.0)  # type: ignore[arg-type]  # memo needs no settings, no store
    assert views.memo("k", 1, lambda: "a") == "a"
    assert views.memo("k", 1, lambda: "b") == "a"  # same marker: kept
    assert views.memo("k", 2, lambda: "c") == "c"  # moved: recomputed, the caller waits
    release, started = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(10)
        return "d"

    assert views.memo("k", 3, slow, stale_ok=True) == "c"  # the old value at once, "d" computed in the background
    assert started.wait(10)
    assert views.memo("k", 3, lambda: "x", stale_ok=True) == "c"  # still computing: no second computation
    release.set()
    for _ in range(100):
        if views.memo("k", 3, lambda: "y", stale_ok=True) == "d":
            break
        threading.Event().wait(0.05)
    assert views.memo("k", 3, lambda: "z") == "d"


def test_memo_does_not_recompute_a_stale_value_more_often_than_allowed() -> None:
    from nflab.serve.views import Views

    views = Views(None, None, min_refresh_s=60.0)  # type: ignore[arg-type]
    assert views.memo("k", 1, lambda: "a") == "a"
    assert views.memo("k", 2, lambda: "b", stale_ok=True) == "a"  # computed a moment ago: not yet again
    assert views.memo("k", 3, lambda: "c", stale_ok=True) == "a"
    assert views.memo("k", 3, lambda: "d") == "d"  # a caller that cannot take an old value gets a fresh one


def test_whole_number_axes_get_whole_number_ticks() -> None:
    import re

    chart = str(line_chart("loss", [("a", [(0, 1.0), (5, 0.8), (10, 0.7), (30, 0.5)])]))
    ticks = re.findall(r'text-anchor="middle">([^<]*)</text>', chart)[:-1]  # the last one is the axis label
    assert ticks and all(t.lstrip("-").isdigit() for t in ticks)
