"""The leaderboard: finished runs grouped by configuration, mean ± std over seeds, ranked only against numbers of
the same kind, next to the published numbers (``source="paper"``). Lower is better for every metric.

Rules:

- **Rows.** Our rows group the runs of one (dataset, family, config_hash) and one result ``kind`` (``best``: the
  checkpoint selected by the validation split; ``mean``: the mean over the last N evaluations; ``final``). Each run
  contributes one value (its ``exact``-budget one when it has several), and one run per seed counts (the newest:
  re-running a seed repeats it); ``std`` is the sample standard deviation (n − 1), None for a single seed.
  ``selection`` says which rule chose each row's checkpoint (``val-best``, ``last-N-mean``, ``final``;
  ``test-best`` marks rows recorded before selection moved to a validation split).
- **Sections.** Rows are ranked within a section: one dataset, one metric, one number of grey levels (bits/dim
  over 17 levels never ranks with 256-level rows) and one ``quantity`` — exact likelihood, unbiased estimate,
  lower bound, biased estimate, joint density of an augmented space — so a bound or a joint density never sits
  above an exact likelihood. ``group_by="budget"`` splits sections further by training steps and preset.
- **Budgets.** Every row carries its budget (steps, preset, parameter count, evaluation estimator, test-set
  size); ``steps``, ``preset`` and ``estimator`` filter the rows.
- **Paired differences.** Seeds are shared across configurations (one data stream per seed and dataset), so
  within a section each row is compared with a reference row (the section's best of ours, or the best row of the
  family ``versus``) on the seeds both ran: Δ = mean of (row − reference) per seed, with its standard error
  sd(Δ)/√n (None for one shared seed).
- **Repro.** A configuration pinned by a reproducibility schedule (``nflab repro``) carries the newest check's
  verdict and date (``repro``: ``✔ reproduced 2026-12-01``, ``✘ drift +0.12 nats (4.1σ) …``); the re-runs of
  checks never count as seeds here (``Store.result_rows`` leaves them out).
- **Default metric** per dataset: bits/dim where there is one (image sets), else nats, else the first recorded
  metric (``mse`` for the 1-D fits). Certificates of the selected checkpoint (condition number, inversion error…)
  ride along as columns; any recorded metric can be asked for by name.
"""

from __future__ import annotations

import base64
import html
import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Group

from nflab.db_models import RESULT_QUANTITIES
from nflab.reference_results import references
from nflab.richtext import SafeTable
from nflab.store import Store

METRIC_PREFERENCE = ("bpd", "nats", "mse")
SELECTIONS = ("best", "mean", "final")  # result kinds a leaderboard can be drawn from
CERTIFICATES = ("jacobian_condition", "jacobian_norm", "inversion_error", "logdet_gap")
QUANTITY_LABELS = {
    "exact": "exact likelihood",
    "unbiased": "unbiased estimate",
    "bound": "lower bound (ELBO / importance-weighted)",
    "biased": "biased estimate",
    "joint": "joint density of an augmented space (not a likelihood of the data)",
}


@dataclass(frozen=True)
class Budget:
    """What a number cost: training steps, model preset, parameters, evaluation estimator, test-set size."""

    steps: int | None = None
    preset: str | None = None
    n_params: int | None = None
    estimator: str | None = None
    test_size: int | None = None

    def label(self) -> str:
        """``2,000 steps · small · 12.3k params · exact · test 2,000`` (unknown parts left out)."""
        parts = [
            None if self.steps is None else f"{self.steps:,} steps",
            self.preset,
            None if self.n_params is None else f"{_si(self.n_params)} params",
            self.estimator,
            None if self.test_size is None else f"test {self.test_size:,}",
        ]
        return " · ".join(p for p in parts if p)


@dataclass(frozen=True)
class Paired:
    """A paired comparison with ``versus`` over ``n`` shared seeds: mean difference (row − versus) and its s.e."""

    versus: str
    mean: float
    se: float | None
    n: int


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
    quantity: str = "exact"
    selection: str = ""
    levels: int | None = None
    budget: Budget = field(default_factory=Budget)
    seeds: tuple[int, ...] = ()
    values: tuple[float, ...] = ()  # per seed, in the order of ``seeds``
    certificates: dict[str, float] = field(default_factory=dict)
    note: str = ""  # the options that tell this configuration from the other ones of its family here
    rank: int | None = None
    paired: Paired | None = None
    repro: str = ""  # the newest repro check's verdict when a schedule pins this configuration (nflab repro)

    def image_keys(self) -> tuple[str, ...]:
        """The names an image map may use for this row: its label, config hash and 12-char hash prefix."""
        if self.config_hash is None:
            return (self.label,)
        return (self.label, self.config_hash, self.config_hash[:12])

    @property
    def section(self) -> tuple[str, str, int | None, str]:
        """What a row is ranked against: (dataset, metric, grey levels, quantity)."""
        return (self.dataset, self.metric, self.levels, self.quantity)

    def metric_label(self) -> str:
        """``nats``, ``bpd``, ``bpd (17 levels)`` for bits/dim of data with other than 256 levels."""
        if self.metric == "bpd" and self.levels not in (None, 256):
            return f"bpd ({self.levels} levels)"
        return self.metric


def _si(n: int) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def _label(family: str | None, config_hash: str) -> str:
    return f"{family or '?'} [{config_hash[:8]}]"


def _one_value_per_run(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (run, metric): its ``exact``-budget row when it has several, else the newest."""
    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["run_id"], row["metric"])
        prev = chosen.get(key)
        rank = (row["budget"] == "exact", row["created_at"])
        if prev is None or rank > (prev["budget"] == "exact", prev["created_at"]):
            chosen[key] = row
    return chosen


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested run config as ``{"model.blocks": 10, …}`` (tuples as lists, as JSON would have them)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


_NOT_A_DIFFERENCE = {"train.seed", "dataset.name"}


def _notes(configs: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """config_hash → ``key=value`` of the options that tell ``configs`` (one family on one dataset) apart: those
    with more than one value among the configs that have them (an option some configs leave out — resolved configs
    list optional groups such as padding only where used — counts only if it varies where present)."""
    flat = {h: flatten({k: v for k, v in c.items() if k != "resources"}) for h, c in configs.items()}
    keys = sorted({k for f in flat.values() for k in f} - _NOT_A_DIFFERENCE)
    varying = [k for k in keys if len({repr(f[k]) for f in flat.values() if k in f}) > 1]
    return {h: " ".join(f"{k.removeprefix('model.')}={f[k]}" for k in varying if k in f) for h, f in flat.items()}


def _budget(member: Mapping[str, Any], test_size: int | None) -> Budget:
    config = member.get("config") or {}
    return Budget(
        steps=(config.get("train") or {}).get("steps"),
        preset=member.get("preset") or (config.get("model") or {}).get("preset"),
        n_params=member.get("n_params"),
        estimator=member.get("budget") or None,
        test_size=test_size,
    )


def _ours(
    store: Store, dataset: str | None, metric: str | None, split: str, kind: str, study: str | None = None
) -> list[Row]:
    rows = store.result_rows(metric=None, split=split, kind=kind, dataset=dataset, study=study)
    per_run = _one_value_per_run(
        r for r in rows if metric is None or r["metric"] == metric or r["metric"] in CERTIFICATES
    )
    certs: dict[str, dict[str, float]] = {}
    for (run_id, name), row in per_run.items():
        if name in CERTIFICATES:
            certs.setdefault(run_id, {})[name] = row["value"]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for (_, name), row in per_run.items():
        if name in CERTIFICATES and name != metric:
            continue
        key = (row["dataset"] or "?", row["family"], row["config_hash"], name, row["quantity"], row["selection"])
        groups.setdefault(key, []).append(row)
    out = []
    for (ds, family, config_hash, name, quantity, selection), rows_of_config in groups.items():
        newest: dict[int, dict[str, Any]] = {}  # one run per seed: a re-run of a seed repeats it, not a new seed
        for m in sorted(rows_of_config, key=lambda m: m["created_at"]):
            newest[int(m["seed"])] = m
        members = [newest[seed] for seed in sorted(newest)]
        values = [m["value"] for m in members]
        sizes = {m["n_samples"] for m in members if m["n_samples"] is not None}
        config = members[0].get("config") or {}
        test_size = sizes.pop() if len(sizes) == 1 else (config.get("dataset") or {}).get("test_samples")
        cert_means = {
            c: statistics.fmean(vs)
            for c in CERTIFICATES
            if (vs := [certs[m["run_id"]][c] for m in members if c in certs.get(m["run_id"], {})])
        }
        out.append(
            Row(
                dataset=ds,
                label=_label(family, config_hash),
                family=family,
                config_hash=config_hash,
                metric=name,
                split=split,
                kind=kind,
                mean=statistics.fmean(values),
                std=statistics.stdev(values) if len(values) > 1 else None,
                n_seeds=len(values),
                best=min(values),
                campaigns=tuple(sorted({m["campaign_name"] for m in members})),
                run_ids=tuple(m["run_id"] for m in members),
                budgets=tuple(sorted({m["budget"] for m in members})),
                quantity=quantity,
                selection=selection,
                levels=(config.get("dataset") or {}).get("n_bins"),
                budget=_budget(members[0], test_size),
                seeds=tuple(int(m["seed"]) for m in members),
                values=tuple(values),
                certificates=cert_means,
            )
        )
    configs = {(r.dataset, r.family): {} for r in out}
    for member_rows in groups.values():
        first = member_rows[0]
        configs[(first["dataset"] or "?", first["family"])][first["config_hash"]] = first.get("config") or {}
    notes = {key: _notes(cfgs) for key, cfgs in configs.items()}
    return [replace(r, note=notes[(r.dataset, r.family)].get(r.config_hash or "", "")) for r in out]


def _papers(dataset: str | None, metric: str | None, split: str, kind: str) -> list[Row]:
    return [
        Row(
            dataset=ref.dataset,
            label=ref.model,
            family=ref.family,
            config_hash=None,
            metric=ref.metric,
            split=split,
            kind=kind,
            mean=ref.value,
            std=None,
            n_seeds=0,
            best=ref.value,
            source="paper",
            citation=ref.citation,
            quantity=ref.quantity,
            selection=ref.selection,
            levels=ref.levels,
            budget=Budget(
                steps=ref.steps,
                preset="published",
                n_params=ref.n_params,
                estimator=ref.estimator,
                test_size=ref.test_size,
            ),
        )
        for ref in references(metric=metric, dataset=dataset)
    ]


def default_metrics(rows: Iterable[Row]) -> dict[str, str]:
    """dataset → the metric shown when none is asked for: bpd, else nats, else mse, else the first one."""
    seen: dict[str, set[str]] = {}
    for row in rows:
        if row.metric not in CERTIFICATES:
            seen.setdefault(row.dataset, set()).add(row.metric)
    return {ds: next((m for m in METRIC_PREFERENCE if m in metrics), min(metrics)) for ds, metrics in seen.items()}


def paired_difference(row: Row, versus: Row) -> Paired | None:
    """Row − versus over their shared seeds (mean and standard error), None without a shared seed."""
    theirs = dict(zip(versus.seeds, versus.values))
    diffs = [value - theirs[seed] for seed, value in zip(row.seeds, row.values) if seed in theirs]
    if not diffs:
        return None
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else None
    return Paired(versus=versus.label, mean=statistics.fmean(diffs), se=se, n=len(diffs))


def _section_key(row: Row, group_by: str | None) -> tuple[Any, ...]:
    key: tuple[Any, ...] = row.section
    if group_by == "budget":
        key += (row.budget.steps, row.budget.preset)
    return key


def _rank(rows: list[Row], group_by: str | None, versus: str | None) -> list[Row]:
    sections: dict[tuple[Any, ...], list[Row]] = {}
    for row in rows:
        sections.setdefault(_section_key(row, group_by), []).append(row)
    out: list[Row] = []
    for members in sections.values():
        members.sort(key=lambda r: (r.mean, r.source != "paper", r.label))
        ours = [r for r in members if r.source == "ours" and r.seeds]
        reference = next((r for r in ours if versus is not None and versus in (r.family, r.label)), None)
        reference = reference if reference is not None or versus is not None else (ours[0] if ours else None)
        for i, row in enumerate(members, start=1):
            paired = None if reference is None or row.source != "ours" else paired_difference(row, reference)
            if row is reference:
                paired = Paired(versus=row.label, mean=0.0, se=None, n=len(row.seeds))
            out.append(replace(row, rank=i, paired=paired))
    order = {q: i for i, q in enumerate(RESULT_QUANTITIES)}
    return sorted(
        out,
        key=lambda r: (
            r.dataset,
            r.metric,
            r.levels or 0,
            order.get(r.quantity, len(order)),
            *(() if group_by != "budget" else (r.budget.steps or 0, r.budget.preset or "")),
            r.rank or 0,
        ),
    )


def known_metrics(store: Store, *, dataset: str | None = None, include_reference: bool = True) -> set[str]:
    """The metrics a leaderboard of ``dataset`` (every dataset: None) can show: those recorded for finished runs,
    and the published ones when reference rows are included."""
    known = {m for ms in store.result_metrics(dataset=dataset).values() for m in ms}
    if include_reference:
        known |= {r.metric for r in references(dataset=dataset)}
    return known


def leaderboard(
    store: Store,
    *,
    dataset: str | None = None,
    metric: str | None = None,
    split: str = "test",
    kind: str = "best",
    include_reference: bool = True,
    steps: int | None = None,
    preset: str | None = None,
    estimator: str | None = None,
    group_by: str | None = None,
    versus: str | None = None,
    study: str | None = None,
) -> list[Row]:
    """Ranked rows (module docstring), sorted by dataset, metric, levels, quantity (and budget), then rank.

    A tuning study's trials (one seed each) are not ranked unless ``study`` names the study: then its trials are
    the rows of ours (``nflab tune promote`` turns the best into a campaign of seeds that is ranked as usual).

    ``metric`` None: each dataset's default metric. ``steps``/``preset``/``estimator`` keep only rows with that
    budget; ``group_by="budget"`` ranks each (steps, preset) apart; ``versus`` names the family (or label) every
    row is paired against (default: the best of ours in its section).
    """
    if group_by not in (None, "budget"):
        raise ValueError(f"group_by: {group_by!r} is not one of: budget")
    rows = _ours(store, dataset, metric, split, kind, study)
    if include_reference:
        rows += _papers(dataset, metric, split, kind)
    if metric is None:
        chosen = default_metrics(rows)
        rows = [r for r in rows if r.metric == chosen.get(r.dataset)]
    rows = [
        r
        for r in rows
        if (steps is None or r.budget.steps == steps)
        and (preset is None or r.budget.preset == preset)
        and (estimator is None or r.budget.estimator == estimator)
    ]
    from nflab.repro import config_badges

    badges = config_badges(store)
    if badges:
        rows = [replace(r, repro=badges.get(r.config_hash or "", "")) for r in rows]
    return _rank(rows, group_by, versus)


def sections(rows: Iterable[Row], group_by: str | None = None) -> dict[tuple[Any, ...], list[Row]]:
    """The rows by ranking section, in order."""
    out: dict[tuple[Any, ...], list[Row]] = {}
    for row in rows:
        out.setdefault(_section_key(row, group_by), []).append(row)
    return out


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None:
        return ""
    return f"{value:.{digits}f}" if math.isfinite(value) else str(value)


def _fmt_cert(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"


def _score(row: Row) -> str:
    return _fmt(row.mean) if row.std is None else f"{_fmt(row.mean)} ± {_fmt(row.std)}"


def _paired_text(row: Row) -> str:
    """``+0.0123 ± 0.0040 (n=3)`` against the section's reference row; ``reference`` on that row; ``—`` unpaired."""
    if row.paired is None:
        return "—" if row.source == "ours" else ""
    p = row.paired
    if p.versus == row.label:
        return "reference"
    se = "" if p.se is None else f" ± {_fmt(p.se)}"
    return f"{p.mean:+.4f}{se} (n={p.n})"


def section_title(rows: list[Row], group_by: str | None = None) -> str:
    """``checkerboard — nats — exact likelihood`` (+ the budget when grouped by it)."""
    first = rows[0]
    title = f"{first.dataset} — {first.metric_label()} — {QUANTITY_LABELS.get(first.quantity, first.quantity)}"
    if group_by == "budget":
        title += f" — {first.budget.steps or '?'} steps, {first.budget.preset or '?'}"
    return title


def _cert_columns(rows: list[Row]) -> list[str]:
    return [c for c in CERTIFICATES if c != rows[0].metric and any(c in r.certificates for r in rows)]


def render_table(rows: list[Row], title: str | None = None) -> SafeTable:
    """One section as a rich table (published rows dimmed and marked "paper"); every string is literal text."""
    metric = rows[0].metric_label() if rows else "value"
    table = SafeTable(title=title or (section_title(rows) if rows else "nflab leaderboard"))
    certs = _cert_columns(rows) if rows else []
    repro = any(r.repro for r in rows)
    columns = [
        ("#", "right"),
        ("model", "left"),
        ("source", "left"),
        (f"{metric} mean ± std", "right"),
        ("seeds", "right"),
        *((("repro", "left"),) if repro else ()),
        ("Δ paired", "right"),
        ("selection", "left"),
        ("budget", "left"),
        *((c, "right") for c in certs),
        ("campaign(s) / citation", "left"),
    ]
    for name, justify in columns:
        wide = max((len(r.repro) for r in rows), default=0) if name == "repro" else None
        table.add_column(name, justify=justify, min_width=wide)  # a verdict is read whole, never cut
    for row in rows:
        paper = row.source == "paper"
        model = row.label if not row.note else f"{row.label} {row.note}"
        table.add_row(
            str(row.rank or ""),
            model,
            row.source,
            _score(row),
            "" if paper else str(row.n_seeds),
            *((row.repro,) if repro else ()),
            _paired_text(row),
            row.selection,
            row.budget.label(),
            *(_fmt_cert(row.certificates.get(c)) for c in certs),
            row.citation if paper else ", ".join(row.campaigns),
            style="dim italic" if paper else None,
        )
    return table


def render(rows: list[Row], group_by: str | None = None) -> Group:
    """Every section as its own table, in order (lower is better everywhere)."""
    if not rows:
        return Group(SafeTable(title="nflab leaderboard: no finished runs"))
    return Group(
        *(render_table(members, section_title(members, group_by)) for members in sections(rows, group_by).values())
    )


def to_json(rows: list[Row]) -> list[dict[str, Any]]:
    """JSON-ready dicts (tuples become lists; ``section`` and ``metric_label`` added)."""
    out = []
    for row in rows:
        item = asdict(row)
        for key in ("campaigns", "run_ids", "budgets", "seeds", "values"):
            item[key] = list(item[key])
        item["section"] = list(row.section)
        item["metric_label"] = row.metric_label()
        out.append(item)
    return out


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1d2330;background:#fff}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #dde}h3{font-size:1rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.92rem}
th,td{padding:.3rem .7rem;border-bottom:1px solid #e6e8ef;text-align:left;vertical-align:middle}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.paper td{color:#5b6275;font-style:italic;background:#f7f7fb}
.badge{display:inline-block;padding:0 .4rem;border-radius:.6rem;font-size:.75rem;font-style:normal}
.badge.paper{background:#e8e0f8;color:#4b2c8a}.badge.ours{background:#dcf2e3;color:#17603a}
img.plot{width:160px;height:auto;border:1px solid #dde}
figure{display:inline-block;margin:.5rem}figcaption{font-size:.8rem;color:#5b6275}
.cite,.note,.budget{font-size:.75rem}
td.repro{white-space:nowrap}
"""


def _img_tag(path: str | Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img class="plot" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table_html(rows: list[Row], images: Mapping[str, str | Path], used: set[str]) -> str:
    e = html.escape
    metric = e(rows[0].metric_label())
    certs = _cert_columns(rows)
    repro = any(r.repro for r in rows)
    head = (
        f"<tr><th>#</th><th>model</th><th>source</th><th>{metric} mean ± std</th><th>seeds</th>"
        + ("<th>repro</th>" if repro else "")
        + "<th>Δ paired</th><th>selection</th><th>budget</th>"
        + "".join(f"<th>{e(c)}</th>" for c in certs)
        + "<th>campaign(s) / citation</th><th>density</th></tr>"
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
        note = f' <span class="note">{e(row.note)}</span>' if row.note else ""
        cells = "".join(f'<td class="num">{e(_fmt_cert(row.certificates.get(c)))}</td>' for c in certs)
        body.append(
            f'<tr class="{e(row.source)}"><td class="num">{row.rank or ""}</td><td>{e(row.label)}{note}</td>'
            f'<td><span class="badge {e(row.source)}">{e(row.source)}</span></td>'
            f'<td class="num">{e(_score(row))}</td><td class="num">{"" if paper else row.n_seeds}</td>'
            + (f'<td class="repro">{e(row.repro)}</td>' if repro else "")
            + f'<td class="num">{e(_paired_text(row))}</td><td>{e(row.selection)}</td>'
            f'<td class="budget">{e(row.budget.label())}</td>{cells}<td>{where}</td><td>{img}</td></tr>'
        )
    return f"<table>{head}{''.join(body)}</table>"


def write_html(
    rows: list[Row],
    path: str | Path,
    images: Mapping[str, str | Path] | None = None,
    *,
    title: str = "nflab leaderboard",
    group_by: str | None = None,
) -> Path:
    """Write a self-contained HTML page (inline CSS, PNGs inlined as base64): per dataset, one table per section.

    ``images`` maps a row's label, config hash or 12-char hash prefix to a PNG file (e.g. its density plot);
    images that match no row are shown in a gallery at the end.
    """
    images = dict(images or {})
    used: set[str] = set()
    parts = [
        f"<h1>{html.escape(title)}</h1><p>Lower is better. Rows are ranked only against rows of the same dataset, "
        "metric and kind of number; rows marked <em>paper</em> are published numbers.</p>"
    ]
    dataset = None
    for members in sections(rows, group_by).values():
        if members[0].dataset != dataset:
            dataset = members[0].dataset
            parts.append(f"<h2>{html.escape(dataset)}</h2>")
        parts.append(f"<h3>{html.escape(section_title(members, group_by))}</h3>{_table_html(members, images, used)}")
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
