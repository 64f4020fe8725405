"""What the pages and the JSON API of ``nflab serve`` show, as plain data (dicts, lists, leaderboard ``Row``s).

One function per page; the HTML templates and the JSON routes both render what these return, so the two never
disagree. The leaderboard itself is :func:`nflab.leaderboard.leaderboard` and :func:`nflab.leaderboard.to_json`,
the very functions behind ``nflab leaderboard --json``; it is memoised per query and recomputed as soon as the
store's :meth:`~nflab.store.Store.change_marker` moves, so the pages are always live.

Every query parameter is checked against the values that exist (datasets, metrics, families, campaigns, studies)
before anything is asked of the store: an unknown value is :class:`BadParameter` (HTTP 400), never part of a query.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from nflab import leaderboard as lb
from nflab.reference_results import references
from nflab.settings import Settings, redact
from nflab.store import Store, StoreLookupError

from . import svg

SORTS = ("rank", "mean", "std", "seeds", "best", "model")
ORDERS = ("asc", "desc")
LEADERBOARD_PARAMS = ("dataset", "metric", "select", "family", "campaign", "study", "sort", "order", "reference")
CURVE_KEYS = ("train_loss", "val_nats", "val_bpd", "test_nats", "test_bpd")
MAX_CURVE_RUNS = 12
LOG_TAIL_LINES = 30
_HASH = re.compile(r"^[0-9a-f]{64}$")
_RUN_ID = re.compile(r"^[0-9a-f-]{36}$")
_FILE = re.compile(r"^[A-Za-z0-9_.-]{1,100}\.(png|svg)$")
_LOG_STEP = re.compile(r"\bstep (\d+)/\d+ (.*)$")


class BadParameter(ValueError):
    """A query parameter with a value that is not one of the allowed ones (HTTP 400)."""


class NotFound(LookupError):
    """No such configuration, campaign, run, study or file (HTTP 404)."""


_VERDICT_WORDS = ("reproduced", "drift", "env-changed", "failed")


def repro_badge(store: Store, row: lb.Row) -> dict[str, Any] | None:
    """The reproducibility badge of a leaderboard row — the leaderboard's own ``repro`` cell (the newest verdict of
    the schedules pinning the configuration, ``nflab repro``) with its verdict word for styling — or None when no
    schedule pins the row's configuration."""
    if not row.repro:
        return None
    status = next((w for w in row.repro.split() if w in _VERDICT_WORDS), "pinned")
    return {"status": status, "text": row.repro}


def repro_history(store: Store, config_hash: str) -> list[dict[str, Any]]:
    """The reproducibility checks of the schedules that pin one configuration, newest first, each with its
    schedule's name."""
    checks = []
    for sched in store.list_schedules():
        if any(spec.get("config_hash") == config_hash for spec in (sched.get("pin") or {}).get("specs") or []):
            checks += [{**c, "schedule": sched["name"]} for c in store.list_repro_checks(sched["id"])]
    return sorted(checks, key=lambda c: (c["created_at"], c["id"]), reverse=True)


@dataclass
class _Entry:
    marker: Any
    value: Any
    at: float = 0.0  # when it was computed (time.monotonic)
    cost: float = 0.0  # how long that took (s)


class Views:
    """The data of every page over one store (thread-safe: the app calls it from a thread pool)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        mlflow_ui_url: str | None = None,
        marker_ttl: float = 1.0,
        min_refresh_s: float = 2.0,
    ) -> None:
        self.settings = settings
        self.store = store
        self.mlflow_ui_url = _http_url(mlflow_ui_url)
        self.marker_ttl = marker_ttl
        self.min_refresh_s = min_refresh_s
        self._lock = threading.Lock()
        self._cache: OrderedDict[Any, _Entry] = OrderedDict()
        self._studies: tuple[float, list[dict[str, Any]]] | None = None
        self._marker: tuple[float, Any] | None = None
        self._computing: dict[Any, threading.Lock] = {}

    # -- memoisation -----------------------------------------------------------------------------------------

    def marker(self) -> Any:
        """The store's change marker, read at most once per ``marker_ttl`` seconds (so a burst of requests costs
        one read; a change shows within that time)."""
        now = time.monotonic()
        cached = self._marker
        if cached is not None and now - cached[0] < self.marker_ttl:
            return cached[1]
        value = self.store.change_marker()
        self._marker = (now, value)
        return value

    def warm(self) -> None:
        """Compute the default leaderboard once and load MLflow's client (seconds to import; the learning curves
        need it): the server calls this in the background while it starts. Failures are left to the requests."""
        import contextlib

        with contextlib.suppress(Exception):
            self.leaderboard_page({})
        with contextlib.suppress(Exception):
            import mlflow.tracking  # noqa: F401

    def memo(self, key: Any, marker: Any, compute: Callable[[], Any], *, size: int = 64, stale_ok: bool = False) -> Any:
        """``compute()``, kept under ``key`` until ``marker`` changes (least recently used out past ``size``). One
        thread computes a key at a time: readers arriving meanwhile wait for its value instead of computing it too.

        ``stale_ok``: when the store changed and a value for an older marker is at hand, return that at once and
        recompute in a background thread (readers never wait for a recomputation that a live campaign triggers with
        every recorded run; the next request after it sees the new value). A value is recomputed this way at most
        once per ``max(min_refresh_s, 2 × its last cost)``, so that a store changing every second cannot keep the
        server busy recomputing. Only for the outermost memo of a request: a value computed in the background must
        itself be fresh."""

        def cached(*, any_marker: bool = False) -> _Entry | None:
            with self._lock:
                entry = self._cache.get(key)
                if entry is not None and (any_marker or entry.marker == marker):
                    self._cache.move_to_end(key)
                    return entry
            return None

        entry = cached(any_marker=stale_ok)
        if entry is not None and entry.marker == marker:
            return entry.value
        with self._lock:
            computing = self._computing.setdefault(key, threading.Lock())
        if entry is not None:  # stale_ok and an older value
            due = time.monotonic() - entry.at >= max(self.min_refresh_s, 2 * entry.cost)
            if due and computing.acquire(blocking=False):
                refresh = threading.Thread(
                    target=self._refresh, args=(key, marker, compute, computing, size), daemon=True
                )
                refresh.start()
            return entry.value
        with computing:
            entry = cached()
            if entry is not None:
                return entry.value
            start = time.monotonic()
            value = compute()
            self._put(key, marker, value, size, start)
        return value

    def _put(self, key: Any, marker: Any, value: Any, size: int, start: float) -> None:
        now = time.monotonic()
        with self._lock:
            self._cache[key] = _Entry(marker, value, now, now - start)
            self._cache.move_to_end(key)
            while len(self._cache) > size:
                self._cache.popitem(last=False)

    def _refresh(self, key: Any, marker: Any, compute: Callable[[], Any], computing: threading.Lock, size: int) -> None:
        try:
            start = time.monotonic()
            self._put(key, marker, compute(), size, start)
        except Exception:  # the next request computes it again (and reports what fails)
            pass
        finally:
            computing.release()

    def studies(self) -> list[dict[str, Any]]:
        """Every study in the Optuna storage (re-read at most every 5 s)."""
        from nflab.tune import list_studies

        now = time.monotonic()
        cached = self._studies
        if cached is not None and now - cached[0] < 5.0:
            return cached[1]
        found = list_studies(self.settings)
        self._studies = (now, found)
        return found

    # -- facets and the leaderboard --------------------------------------------------------------------------

    def facets(self, marker: Any | None = None, *, stale_ok: bool = False) -> dict[str, Any]:
        """The choices of the leaderboard's filters: datasets (with their metrics), families, campaigns, studies,
        selections, sort keys. ``stale_ok``: those of a moment ago will do while new ones are computed (checking a
        request's parameters; a page is always drawn with fresh ones)."""
        marker = self.marker() if marker is None else marker

        def compute() -> dict[str, Any]:
            import nflab.flows as flows

            metrics = {ds: set(ms) for ds, ms in self.store.result_metrics().items()}
            for ref in references():
                metrics.setdefault(ref.dataset, set()).add(ref.metric)
            runs = self.store.run_facets()
            return {
                "datasets": sorted(metrics),
                "metrics": {ds: sorted(ms) for ds, ms in sorted(metrics.items())},
                "families": sorted(set(flows.available()) | set(runs["families"])),
                "campaigns": runs["campaigns"],
                "studies": sorted(row["name"] for row in self.store.list_study_rows()),  # what --study accepts
            }

        out = dict(self.memo(("facets",), marker, compute, stale_ok=stale_ok))
        out["selections"] = list(lb.SELECTIONS)
        out["sorts"] = list(SORTS)
        return out

    def leaderboard_query(self, params: Mapping[str, str]) -> dict[str, Any]:
        """The leaderboard's query parameters, checked (``BadParameter`` names the parameter and the allowed values)."""
        unknown = sorted(set(params) - set(LEADERBOARD_PARAMS) - {"token"})
        if unknown:
            raise BadParameter(f"unknown parameter {unknown[0]!r}; allowed: {', '.join(LEADERBOARD_PARAMS)}")
        marker = self.marker()
        facets = self.facets(marker, stale_ok=True)
        q: dict[str, Any] = {k: (params.get(k) or None) for k in LEADERBOARD_PARAMS}
        q["select"] = q["select"] or "best"
        q["sort"] = q["sort"] or "rank"
        q["order"] = q["order"] or "asc"
        reference = (q["reference"] or "yes").lower()
        checks = {
            "dataset": facets["datasets"],
            "family": facets["families"],
            "campaign": facets["campaigns"],
            "study": facets["studies"],
            "select": facets["selections"],
            "sort": SORTS,
            "order": ORDERS,
            "reference": ("yes", "no"),
        }
        q["reference"] = reference
        for key, allowed in checks.items():
            if q[key] is not None and q[key] not in allowed:
                raise BadParameter(f"{key}: {q[key]!r} is not one of: {', '.join(allowed) or 'none'}")
        if q["metric"] is not None:
            known = (
                set(facets["metrics"].get(q["dataset"], ()))
                if q["dataset"] is not None
                else {m for ms in facets["metrics"].values() for m in ms}
            )
            if q["metric"] not in known:
                raise BadParameter(f"metric: {q['metric']!r} is not one of: {', '.join(sorted(known)) or 'none'}")
        q["marker"] = marker
        return q

    def leaderboard_rows(self, q: Mapping[str, Any]) -> list[lb.Row]:
        """The rows ``nflab leaderboard --json`` prints for the same dataset, metric, selection, reference choice
        and study (``--study``: that study's trials, which the leaderboard leaves out otherwise), memoised until the
        store changes; then narrowed by family and campaign and sorted within each section. These filters only hide
        rows: ranks and paired differences stay those of the whole section."""
        key = ("leaderboard", q["dataset"], q["metric"], q["select"], q["reference"], q["study"])

        def compute() -> list[lb.Row]:
            known = None if q["metric"] is None else lb.known_metrics(
                self.store, dataset=q["dataset"], include_reference=q["reference"] == "yes"
            )  # fmt: skip
            if known is not None and q["metric"] not in known:
                return []
            return lb.leaderboard(
                self.store,
                dataset=q["dataset"],
                metric=q["metric"],
                kind=q["select"],
                include_reference=q["reference"] == "yes",
                study=q["study"],
            )

        rows: list[lb.Row] = self.memo(key, q["marker"], compute)
        if q["family"] is not None:
            rows = [r for r in rows if r.family == q["family"]]
        if q["campaign"] is not None:
            rows = [r for r in rows if r.source == "paper" or q["campaign"] in r.campaigns]
        return _sorted(rows, q["sort"], q["order"])

    def leaderboard_page(self, params: Mapping[str, str]) -> dict[str, Any]:
        """Everything the leaderboard page shows: the query, the filter choices, the rows by section."""
        return self.leaderboard_view(self.leaderboard_query(params))

    def leaderboard_view(self, q: Mapping[str, Any]) -> dict[str, Any]:
        """:meth:`leaderboard_page` for a query already checked by :meth:`leaderboard_query`."""
        rows = self.leaderboard_rows(q)
        by_section = []
        for members in lb.sections(rows).values():
            by_section.append(
                {
                    "title": lb.section_title(members),
                    "dataset": members[0].dataset,
                    "metric_label": members[0].metric_label(),
                    "certificates": lb._cert_columns(members),
                    "rows": [self._row_view(r) for r in members],
                }
            )
        thumbs = self._thumbnails(q)
        for section in by_section:
            for view in section["rows"]:
                view["image"] = thumbs.get(view["row"].config_hash or "")
        shown = {k: q[k] for k in LEADERBOARD_PARAMS}
        return {"query": shown, "facets": self.facets(q["marker"]), "sections": by_section, "n_rows": len(rows)}

    def _thumbnails(self, q: Mapping[str, Any]) -> dict[str, str]:
        """config hash → the URL of a density (toy) or samples (images) plot of its first seed's run, for rows whose
        run storage is a local folder (a remote one would cost a request per row: the configuration page has them)."""
        from nflab.workers.storage import is_remote

        if is_remote(self.settings.storage):
            return {}
        key = ("thumbs", q["dataset"], q["metric"], q["select"], q["reference"], q["study"])

        def compute() -> dict[str, str]:
            from nflab.workers.storage import Folder

            full = dict(q, family=None, campaign=None, sort="rank", order="asc")
            firsts = {r.config_hash: r.run_ids[0] for r in self.leaderboard_rows(full) if r.run_ids and r.config_hash}
            where = self.store.run_locations(firsts.values())
            root = Folder.of(self.settings.storage).local
            out = {}
            for config_hash, run_id in firsts.items():
                if run_id not in where:
                    continue
                folder = root.joinpath(*where[run_id])
                for name in ("density.png", "samples.png"):
                    if (folder / name).is_file():
                        out[config_hash] = f"/runs/{run_id}/files/{name}"
                        break
            return out

        return self.memo(key, q["marker"], compute)

    def _row_view(self, row: lb.Row) -> dict[str, Any]:
        return {
            "row": row,
            "score": lb._score(row),
            "paired": lb._paired_text(row),
            "budget": row.budget.label(),
            "best": lb._fmt(row.best) if row.source == "ours" else "",
            "certificates": {c: lb._fmt_cert(v) for c, v in row.certificates.items()},
            "href": None if row.config_hash is None else f"/configs/{row.config_hash}",
            "badge": repro_badge(self.store, row),
        }

    # -- configuration ---------------------------------------------------------------------------------------

    def configuration(self, config_hash: str, *, curves: bool = True) -> dict[str, Any]:
        """One configuration: its resolved options against the family's published defaults, its runs per seed,
        its leaderboard rows, learning curves, images, certificates, reproducibility history, code versions."""
        if not _HASH.match(config_hash):
            raise NotFound(f"configuration: {config_hash[:80]!r} is no config hash (64 hex digits)")
        runs = self.store.runs_of_config(config_hash)
        if not runs:
            raise NotFound(f"configuration: no run has config hash {config_hash}")
        newest = runs[-1]
        config = newest["config"] or {}
        family, dataset = newest.get("family"), newest.get("dataset")
        options = _option_rows(config)
        marker = self.marker()
        q = {"dataset": dataset, "metric": None, "select": "best", "reference": "no", "marker": marker}
        q.update({"family": None, "campaign": None, "study": None, "sort": "rank", "order": "asc"})
        rows = [r for r in self.leaderboard_rows(q) if r.config_hash == config_hash] if dataset else []
        metric = rows[0].metric if rows else None
        run_views = [self._run_view(r, metric) for r in runs]
        certificates = sorted({c for r in run_views for c in r["certificates"]})
        out: dict[str, Any] = {
            "config_hash": config_hash,
            "label": lb._label(family, config_hash),
            "family": family,
            "dataset": dataset,
            "metric": metric,
            "rows": [self._row_view(r) for r in rows],
            "options": options,
            "n_different": sum(1 for o in options if o["differs"]),
            "runs": run_views,
            "certificate_names": certificates,
            "repro": repro_history(self.store, config_hash),
            "code_versions": sorted({r["code_version"] for r in runs if r.get("code_version")}),
        }
        out["curves"] = self._curves(runs) if curves else {}
        return out

    def _run_view(self, run: Mapping[str, Any], metric: str | None) -> dict[str, Any]:
        best = {
            r["metric"]: r["value"]
            for r in sorted(run.get("results", []), key=lambda r: r["budget"] == "exact")
            if r["kind"] == "best" and r["split"] == "test"
        }
        files = [n for n in self._folder(run).names() if _FILE.match(n)] if run["status"] != "pending" else []
        return {
            "id": run["id"],
            "run_key": run["run_key"],
            "campaign_id": run["campaign_id"],
            "campaign_name": run.get("campaign_name"),
            "seed": run["seed"],
            "status": run["status"],
            "error": run.get("error"),
            "value": best.get(metric) if metric else None,
            "certificates": {c: best[c] for c in lb.CERTIFICATES if c in best},
            "attempts": run.get("attempts"),
            "wall_s": run.get("wall_s"),
            "n_params": run.get("n_params"),
            "preset": run.get("preset"),
            "code_version": run.get("code_version"),
            "environment": self._mlflow_environment(run.get("mlflow_run_id")),
            "data_digest": run.get("data_digest"),
            "started_at": run.get("started_at"),
            "finished_at": run.get("finished_at"),
            "mlflow_run_id": run.get("mlflow_run_id"),
            "mlflow_url": self._mlflow_url(run.get("mlflow_experiment_id"), run.get("mlflow_run_id")),
            "images": [f"/runs/{run['id']}/files/{quote(n)}" for n in files],
            "checkpoints": [
                {"step": c["step"], "kind": c["kind"], "sha256": c.get("sha256")} for c in run.get("checkpoints", [])
            ],
        }

    def _mlflow_environment(self, mlflow_run_id: str | None) -> dict[str, Any]:
        """The environment fingerprint the worker tagged its MLflow run with (empty when there is none)."""
        if not mlflow_run_id:
            return {}
        try:
            from mlflow.tracking import MlflowClient

            from nflab.workers.tracking import ENVIRONMENT_TAG, absolute_tracking_uri

            client = MlflowClient(tracking_uri=absolute_tracking_uri(self.settings.mlflow_tracking_uri))
            found = json.loads(client.get_run(mlflow_run_id).data.tags.get(ENVIRONMENT_TAG) or "{}")
        except Exception:  # MLflow unreachable or the run gone: the page shows the rest
            return {}
        return found if isinstance(found, dict) else {}

    def _mlflow_url(self, experiment_id: str | None, run_id: str | None) -> str | None:
        if self.mlflow_ui_url is None or not experiment_id or not run_id:
            return None
        return f"{self.mlflow_ui_url}/#/experiments/{quote(str(experiment_id))}/runs/{quote(str(run_id))}"

    def _folder(self, run: Mapping[str, Any]) -> Any:
        from nflab.workers.storage import Folder, join

        return Folder.of(join(self.settings.storage, run["campaign_id"], run["run_key"]))

    def _curves(self, runs: list[dict[str, Any]]) -> dict[str, Any]:
        """Per seed: the logged train loss and held-out numbers over steps (MLflow's metric history; the run's
        own log when MLflow has none), as data and as SVG charts."""
        histories = {}
        shown = [r for r in runs if r["status"] in ("finished", "failed", "running")][-MAX_CURVE_RUNS:]
        for run in shown:
            history = self._mlflow_history(run.get("mlflow_run_id")) or self._log_history(run)
            if history:
                histories[f"seed {run['seed']}"] = history
        charts = {}
        eval_key = "val_bpd" if any(h.get("val_bpd") for h in histories.values()) else "val_nats"
        for key, title in (("train_loss", "train loss (nats)"), (eval_key, f"validation {eval_key[4:]}")):
            chart = svg.line_chart(title, [(label, h.get(key, [])) for label, h in histories.items()])
            if chart is not None:
                charts[key] = chart
        return {"data": histories, "charts": charts}

    def _mlflow_history(self, mlflow_run_id: str | None) -> dict[str, list[tuple[float, float]]]:
        if not mlflow_run_id:
            return {}
        try:
            from mlflow.tracking import MlflowClient

            from nflab.workers.tracking import absolute_tracking_uri

            client = MlflowClient(tracking_uri=absolute_tracking_uri(self.settings.mlflow_tracking_uri))
            logged = client.get_run(mlflow_run_id).data.metrics
            out = {}
            for key in CURVE_KEYS:
                if key in logged:
                    history = client.get_metric_history(mlflow_run_id, key)
                    out[key] = sorted((float(m.step), float(m.value)) for m in history)
            return out
        except Exception:  # MLflow unreachable or the run gone: the run's own log has the same numbers
            return {}

    def _log_history(self, run: Mapping[str, Any]) -> dict[str, list[tuple[float, float]]]:
        text = self._folder(run).read_text("train.log") or ""
        out: dict[str, list[tuple[float, float]]] = {}
        for line in text.splitlines():
            found = _LOG_STEP.search(line)
            if found is None:
                continue
            step = float(found[1])
            for pair in found[2].split():
                key, _, value = pair.partition("=")
                if key in CURVE_KEYS:
                    try:
                        out.setdefault(key, []).append((step, float(value)))
                    except ValueError:
                        continue
        return out

    def run_file(self, run_id: str, name: str) -> tuple[bytes, str]:
        """An image of a run (``density.png``, ``samples.png``…) from its run storage folder: (bytes, media type)."""
        if not _RUN_ID.match(run_id) or not _FILE.match(name):
            raise NotFound(f"file: {name[:80]!r} of run {run_id[:40]!r} is not a run image")
        try:
            run = self.store.get_run(run_id)
        except StoreLookupError:
            raise NotFound(f"run: {run_id!r} is not a run id") from None
        if run["id"] != run_id:
            raise NotFound(f"run: {run_id!r} is not a run id")
        folder = self._folder(run)
        data = _read_bytes(folder, name)
        if data is None:
            raise NotFound(f"file: run {run_id} has no {name!r}")
        return data, "image/png" if name.endswith(".png") else "image/svg+xml"

    # -- campaigns -------------------------------------------------------------------------------------------

    def campaigns(self, limit: int = 200) -> dict[str, Any]:
        """Every campaign (newest first) with its run counts and progress; ``refresh`` while any is active.

        Statuses are the stored ones: the web app only reads, so it does not ask submitted campaigns' drivers how
        they are (``nflab status`` does, and records a driver that died)."""
        items = [_campaign_view(c) for c in self.store.list_campaigns(limit=limit)]
        return {"campaigns": items, "refresh": any(c["active"] for c in items)}

    def campaign(self, campaign_id: str) -> dict[str, Any]:
        """One campaign: status, progress, its runs (with their configuration), failed runs with reason and log."""
        if not re.match(r"^[0-9a-f-]{1,36}$", campaign_id):
            raise NotFound(f"campaign: {campaign_id[:80]!r} is no campaign id")
        try:
            found = self.store.get_campaign(campaign_id)
        except StoreLookupError as exc:
            raise NotFound(str(exc)) from None
        view = _campaign_view(found)
        runs = []
        for r in self.store.list_runs(found["id"]):
            item = {
                k: r.get(k)
                for k in ("id", "run_key", "status", "seed", "family", "dataset", "config_hash", "error", "attempts")
            }
            item["wall_s"] = r.get("wall_s")
            item["mlflow_url"] = self._mlflow_url(found.get("mlflow_experiment_id"), r.get("mlflow_run_id"))
            if r["status"] == "failed":
                text = self._folder(r).read_text("train.log") or ""
                item["log_tail"] = "\n".join(text.splitlines()[-LOG_TAIL_LINES:])
            runs.append(item)
        view["runs"] = runs
        view["failed"] = [r for r in runs if r["status"] == "failed"]
        view["refresh"] = view["active"]
        return view

    # -- studies ---------------------------------------------------------------------------------------------

    def study_list(self) -> dict[str, Any]:
        """Every tuning study with its trial counts by state and best value(s)."""
        return {"studies": self.studies(), "optuna": redact(self.settings.optuna_url)}

    def study(self, name: str) -> dict[str, Any]:
        """One study: objectives, space, trials with their states, best trial(s), history and Pareto charts, and
        the plots ``nflab tune`` wrote (importances, slices…)."""
        from nflab.tune import StudyNotFound, show_study

        if name not in {s["name"] for s in self.studies()}:
            self._studies = None  # a study created a moment ago
            if name not in {s["name"] for s in self.studies()}:
                raise NotFound(f"study: {name[:80]!r} is not a study")
        try:
            shown = show_study(self.settings, name)
        except StudyNotFound as exc:
            raise NotFound(str(exc)) from None
        plots = [p.rsplit("/", 1)[-1] for p in shown.pop("plots")]
        shown["plots"] = [f"/studies/{quote(name, safe='')}/plots/{quote(p)}" for p in plots if _FILE.match(p)]
        shown["charts"] = _study_charts(shown)
        for trial in [*shown["trials"], *shown["best"]]:
            trial["config_href"] = self._config_href(trial.get("run_id"))
        return shown

    def _config_href(self, run_id: str | None) -> str | None:
        if not run_id:
            return None
        try:
            return f"/configs/{self.store.get_run(run_id)['config_hash']}"
        except StoreLookupError:
            return None

    def study_plot(self, name: str, file: str) -> bytes:
        """A PNG plot written by ``nflab tune`` for study ``name``."""
        if not _FILE.match(file) or name not in {s["name"] for s in self.studies()}:
            raise NotFound(f"plot: {file[:80]!r} of study {name[:80]!r} does not exist")
        path = self.settings.home / "studies" / name / file
        if not path.is_file():
            raise NotFound(f"plot: study {name!r} has no {file!r}")
        return path.read_bytes()


def _read_bytes(folder: Any, name: str) -> bytes | None:
    if not folder.remote:
        path = folder.local / name
        return path.read_bytes() if path.is_file() else None
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / name
        return local.read_bytes() if folder.get(name, local) else None


def _http_url(url: str | None) -> str | None:
    if not url or not re.match(r"^https?://[^\s\"'<>]+$", url.strip()):
        return None
    return url.strip().rstrip("/")


def _campaign_view(c: Mapping[str, Any]) -> dict[str, Any]:
    counts = dict(c.get("counts") or {})
    total = counts.get("total", 0)
    done = sum(counts.get(s, 0) for s in ("finished", "failed", "cancelled"))
    return {
        "id": c["id"],
        "name": c["name"],
        "status": c["status"],
        "created_at": c.get("created_at"),
        "error": c.get("error"),
        "counts": counts,
        "done": done,
        "total": total,
        "percent": 0 if not total else round(100 * done / total),
        "active": c["status"] in ("pending", "running"),
        "mlflow_experiment_id": c.get("mlflow_experiment_id"),
    }


def _sorted(rows: list[lb.Row], sort: str, order: str) -> list[lb.Row]:
    if sort == "rank" and order == "asc":
        return rows
    desc = order == "desc"

    def key(r: lb.Row) -> Any:
        value = {
            "rank": r.rank,
            "mean": r.mean,
            "std": r.std,
            "seeds": r.n_seeds,
            "best": r.best,
            "model": r.label.lower(),
        }[sort]
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        return (missing, value if not missing else 0)

    out: list[lb.Row] = []
    for members in lb.sections(rows).values():
        present = [r for r in members if not key(r)[0]]
        absent = [r for r in members if key(r)[0]]
        out += sorted(present, key=key, reverse=desc) + absent
    return out


def published_defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved config of the same dataset and family (and CIF base, run kind) with nothing else given: the
    family's published defaults and the pipeline defaults, flattened; empty when it cannot be resolved."""
    from nflab.pipelines.resolve import resolve_run

    raw: dict[str, Any] = {}
    if config.get("kind") == "fit1d":
        fit = config.get("fit1d") or {}
        raw = {"kind": "fit1d", "fit1d": {k: fit[k] for k in ("target", "variant") if k in fit}}
    else:
        model = config.get("model") or {}
        raw = {"dataset": {"name": (config.get("dataset") or {}).get("name")}, "model": {"family": model.get("family")}}
        if "base" in model:
            raw["model"]["base"] = model["base"]
    try:
        return lb.flatten(resolve_run(raw))
    except Exception:  # an old or foreign config: show its options without defaults
        return {}


def _option_rows(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    defaults = published_defaults(config)
    rows = []
    for key, value in lb.flatten(config).items():
        has_default = key in defaults
        per_run = key in ("train.seed",)
        rows.append(
            {
                "key": key,
                "value": value,
                "default": defaults.get(key),
                "has_default": has_default,
                "differs": has_default and not per_run and defaults[key] != value,
            }
        )
    return rows


def _study_charts(shown: Mapping[str, Any]) -> dict[str, Any]:
    complete = [t for t in shown["trials"] if t["state"] == "complete" and t["values"]]
    charts: dict[str, Any] = {}
    if not complete:
        return charts
    objectives = shown.get("objectives") or ["objective"]
    directions = shown.get("directions") or ["minimize"]
    sign = 1 if directions[0] == "minimize" else -1
    points = [(float(t["number"]), float(t["values"][0])) for t in complete]
    best_line, best = [], None
    for x, y in sorted(points):
        best = y if best is None or sign * y < sign * best else best
        best_line.append((x, best))
    best_numbers = {b["number"] for b in shown.get("best", [])}
    charts["history"] = svg.scatter_chart(
        "optimisation history",
        points,
        highlight=[(float(t["number"]), float(t["values"][0])) for t in complete if t["number"] in best_numbers],
        line=best_line,
        x_label="trial",
        y_label=str(objectives[0]),
        legend=["trials", "best so far"],
    )
    if len(directions) == 2 and all(len(t["values"]) == 2 for t in complete):
        charts["pareto"] = svg.scatter_chart(
            "Pareto front",
            [(float(t["values"][0]), float(t["values"][1])) for t in complete],
            highlight=[(float(b["values"][0]), float(b["values"][1])) for b in shown.get("best", []) if b["values"]],
            x_label=str(objectives[0]),
            y_label=str(objectives[1]) if len(objectives) > 1 else "objective 2",
            legend=["trials", "Pareto front"],
        )
    return {k: v for k, v in charts.items() if v is not None}
