"""The leaderboard: finished runs grouped by (dataset, family, config_hash), mean ± std over seeds, next to
the published numbers (``source="paper"``). Lower is better for every metric nflab ranks (nats, bpd).

Each run contributes one value per (metric, split, kind): its ``exact``-budget result when it has one, else its
newest result. ``std`` is the sample standard deviation (n − 1), None for a single seed.
"""

from __future__ import annotations

import base64
import html
import math
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nflab.reference_results import references
from nflab.richtext import SafeTable
from nflab.store import Store


@dataclass(frozen=True)
class Row:
    """One leaderboard line: an nflab configuration aggregated over seeds, or a published number."""

    dataset: str
    label: str
    family: str | None
    config_hash: str | None
    metric: str
    split: str
    kind: str
    mean: float
    std: float | None
    n_seeds: int
    best: float
    source: str = "ours"  # "ours" | "paper"
    campaigns: tuple[str, ...] = ()
    run_ids: tuple[str, ...] = field(default=(), repr=False)
    budgets: tuple[str, ...] = ()
    citation: str | None = None

    def image_keys(self) -> tuple[str, ...]:
        """The names an image map may use for this row: its label, config hash and 12-char hash prefix."""
        if self.config_hash is None:
            return (self.label,)
        return (self.label, self.config_hash, self.config_hash[:12])


def _label(family: str | None, config_hash: str) -> str:
    return f"{family or '?'} [{config_hash[:8]}]"


def _one_value_per_run(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    chosen: dict[str, dict[str, Any]] = {}
    for row in rows:
        prev = chosen.get(row["run_id"])
        rank = (row["budget"] == "exact", row["created_at"])
        if prev is None or rank > (prev["budget"] == "exact", prev["created_at"]):
            chosen[row["run_id"]] = row
    return chosen


def _ours(store: Store, dataset: str | None, metric: str, split: str, kind: str) -> list[Row]:
    groups: dict[tuple[str, str | None, str], list[dict[str, Any]]] = {}
    per_run = _one_value_per_run(store.result_rows(metric=metric, split=split, kind=kind, dataset=dataset))
    for row in per_run.values():
        groups.setdefault((row["dataset"] or "?", row["family"], row["config_hash"]), []).append(row)
    out = []
    for (ds, family, config_hash), members in groups.items():
        values = [m["value"] for m in members]
        out.append(
            Row(
                dataset=ds,
                label=_label(family, config_hash),
                family=family,
                config_hash=config_hash,
                metric=metric,
                split=split,
                kind=kind,
                mean=statistics.fmean(values),
                std=statistics.stdev(values) if len(values) > 1 else None,
                n_seeds=len(values),
                best=min(values),
                campaigns=tuple(sorted({m["campaign_name"] for m in members})),
                run_ids=tuple(sorted(m["run_id"] for m in members)),
                budgets=tuple(sorted({m["budget"] for m in members})),
            )
        )
    return out


def _papers(dataset: str | None, metric: str, split: str, kind: str) -> list[Row]:
    return [
        Row(
            dataset=ref.dataset,
            label=ref.model,
            family=ref.family,
            config_hash=None,
            metric=metric,
            split=split,
            kind=kind,
            mean=ref.value,
            std=None,
            n_seeds=0,
            best=ref.value,
            source="paper",
            citation=ref.citation,
        )
        for ref in references(metric=metric, dataset=dataset)
    ]


def leaderboard(
    store: Store,
    *,
    dataset: str | None = None,
    metric: str = "nats",
    split: str = "test",
    kind: str = "best",
    include_reference: bool = True,
) -> list[Row]:
    """Rows sorted by dataset, then mean ascending (lower is better); published rows mixed in where asked."""
    rows = _ours(store, dataset, metric, split, kind)
    if include_reference:
        rows += _papers(dataset, metric, split, kind)
    return sorted(rows, key=lambda r: (r.dataset, r.mean, r.source != "paper", r.label))


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None:
        return ""
    return f"{value:.{digits}f}" if math.isfinite(value) else str(value)


def _score(row: Row) -> str:
    return _fmt(row.mean) if row.std is None else f"{_fmt(row.mean)} ± {_fmt(row.std)}"


def render_table(rows: list[Row], title: str | None = None) -> SafeTable:
    """A rich table of the rows (published rows dimmed and marked "paper")."""
    metric = rows[0].metric if rows else "value"
    table = SafeTable(title=title or f"nflab leaderboard ({metric}, lower is better)")
    for name, justify in (
        ("dataset", "left"),
        ("model", "left"),
        ("source", "left"),
        (f"{metric} mean ± std", "right"),
        ("seeds", "right"),
        ("best", "right"),
        ("campaign(s)", "left"),
    ):
        table.add_column(name, justify=justify)
    for row in rows:
        paper = row.source == "paper"
        table.add_row(
            row.dataset,
            row.label,
            row.source,
            _score(row),
            "" if paper else str(row.n_seeds),
            _fmt(row.best),
            ", ".join(row.campaigns),
            style="dim italic" if paper else None,
        )
    return table


def to_json(rows: list[Row]) -> list[dict[str, Any]]:
    """JSON-ready dicts (tuples become lists)."""
    out = []
    for row in rows:
        item = asdict(row)
        for key in ("campaigns", "run_ids", "budgets"):
            item[key] = list(item[key])
        out.append(item)
    return out


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1d2330;background:#fff}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #dde}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.92rem}
th,td{padding:.3rem .7rem;border-bottom:1px solid #e6e8ef;text-align:left;vertical-align:middle}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.paper td{color:#5b6275;font-style:italic;background:#f7f7fb}
.badge{display:inline-block;padding:0 .4rem;border-radius:.6rem;font-size:.75rem;font-style:normal}
.badge.paper{background:#e8e0f8;color:#4b2c8a}.badge.ours{background:#dcf2e3;color:#17603a}
img.plot{width:160px;height:auto;border:1px solid #dde}
figure{display:inline-block;margin:.5rem}figcaption{font-size:.8rem;color:#5b6275}
.cite{font-size:.75rem}
"""


def _img_tag(path: str | Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img class="plot" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table_html(rows: list[Row], images: Mapping[str, str | Path], used: set[str]) -> str:
    e = html.escape
    metric = e(rows[0].metric)
    head = (
        f"<tr><th>model</th><th>source</th><th>{metric} mean ± std</th><th>seeds</th><th>best</th>"
        "<th>campaign(s) / citation</th><th>density</th></tr>"
    )
    body = []
    for row in rows:
        paper = row.source == "paper"
        key = next((k for k in row.image_keys() if k in images), None)
        img = ""
        if key is not None:
            used.add(key)
            img = _img_tag(images[key], row.label)
        where = f'<span class="cite">{e(row.citation or "")}</span>' if paper else e(", ".join(row.campaigns))
        body.append(
            f'<tr class="{e(row.source)}"><td>{e(row.label)}</td>'
            f'<td><span class="badge {e(row.source)}">{e(row.source)}</span></td>'
            f'<td class="num">{e(_score(row))}</td><td class="num">{"" if paper else row.n_seeds}</td>'
            f'<td class="num">{e(_fmt(row.best))}</td><td>{where}</td><td>{img}</td></tr>'
        )
    return f"<table>{head}{''.join(body)}</table>"


def write_html(
    rows: list[Row],
    path: str | Path,
    images: Mapping[str, str | Path] | None = None,
    *,
    title: str = "nflab leaderboard",
) -> Path:
    """Write a self-contained HTML page (inline CSS, PNGs inlined as base64): one table per dataset.

    ``images`` maps a row's label, config hash or 12-char hash prefix to a PNG file (e.g. its density plot);
    images that match no row are shown in a gallery at the end.
    """
    images = dict(images or {})
    used: set[str] = set()
    by_dataset: dict[str, list[Row]] = {}
    for row in rows:
        by_dataset.setdefault(row.dataset, []).append(row)
    parts = [f"<h1>{html.escape(title)}</h1><p>Lower is better. Rows marked <em>paper</em> are published numbers.</p>"]
    for dataset, members in by_dataset.items():
        parts.append(f"<h2>{html.escape(dataset)}</h2>{_table_html(members, images, used)}")
    rest = [k for k in images if k not in used]
    if rest:
        figures = "".join(
            f"<figure>{_img_tag(images[k], k)}<figcaption>{html.escape(k)}</figcaption></figure>" for k in rest
        )
        parts.append(f"<h2>other plots</h2>{figures}")
    if not rows:
        parts.append("<p>No finished runs yet.</p>")
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>{''.join(parts)}</body></html>\n"
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
