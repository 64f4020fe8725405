"""Scheduled reproducibility runs: pin a result, re-run it on a schedule, judge whether it still comes out.

**The pin** (taken by ``repro add``): the resolved run specs and seeds of the target's finished runs (a pipeline's
newest campaign, a campaign, or a configuration's runs from the leaderboard); per run the reference test results
(``best`` and ``final`` of each metric), the best checkpoint's sha256 and the data-stream digest; the code
version; the environment fingerprint (``nflab.workers.environment``); the data fingerprint (generator and version
for synthetic sets, sha256 of the files for file-based sets).

**The check** re-runs the pinned specs (same seeds) as a campaign on Ray and judges, per configuration and metric:

- *exact tier* — the fingerprint is unchanged and every run is on CPU: every metric, the best checkpoint's hash and
  the data digest must be identical, bit for bit; any difference is drift, shown to the last digit;
- *statistical tier* — otherwise (or with ``exact=False``): with the reference seeds' mean μ and sample standard
  deviation σ (0 for one seed), σ* = max(σ, floor), the re-run's mean μ' is within tolerance when
  |μ' − μ| ≤ k·σ*; with ≥ 3 seeds on both sides a two-sided Welch t-test must also not reject equality at
  α = 0.05 (MLPerf decides "reproduces" with a t-test at p = 0.05).

Verdict, in order of precedence: ``failed`` (a run did not finish: its reason), ``drift`` (the metric, reference
μ ± σ, observed, Δ in σ*), ``env-changed`` (the fingerprint differs — the diff is shown — but the numbers are within
the statistical tolerance), ``reproduced``. Each check is its own row; a verdict is written once.

**Scheduling**: a 5-field cron expression or ``@hourly``/``@daily``/``@weekly``/``@monthly``/``@yearly`` in an IANA
timezone, evaluated by cronsim (Debian cron semantics, DST included). A tick at ``now`` looks for the latest due
time after the last one claimed (or after the schedule was added or resumed): missed due times run once, the
latest; the others are counted in the check's details. The claim is a check row with the unique pair
(schedule, due time): of two writers only one can create it. A due time that finds the previous check still
running is recorded as ``skipped``; a running check whose process is gone (same host, dead pid) or that has run
longer than ``STALE_AFTER`` is closed as ``failed`` first.
"""

from __future__ import annotations

import math
import os
import socket
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:  # the store and its migrations load only when a command needs them (the CLI starts fast)
    from nflab.settings import Settings
    from nflab.store import Store


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
VERDICTS = ("reproduced", "drift", "env-changed", "failed")
BAD_VERDICTS = ("drift", "env-changed", "failed")
DEFAULT_K = 3.0
DEFAULT_FLOOR = 0.01
ALPHA = 0.05
MIN_SEEDS_FOR_TEST = 3
STALE_AFTER = timedelta(hours=24)
REPORTED_KINDS = ("best", "final")
_CERTIFICATES = {"inversion_error", "logdet_gap", "jacobian_condition", "jacobian_norm"}
_CRON_HELP = "5 fields 'minute hour day-of-month month day-of-week' (e.g. '0 3 * * 1') or one of " + ", ".join(
    k for k in NICKNAMES if k not in ("@annually", "@midnight")
)


class ReproError(ValueError):
    """Bad input to a repro command: one line naming the field, the value and what is allowed."""


# ------------------------------------------------------------------------------------------------ schedule maths


def normalize_cron(expr: str) -> str:
    """The 5-field form of ``expr`` (nicknames expanded, as crontab(5) defines them), checked by cronsim."""
    from cronsim import CronSim, CronSimError

    text = " ".join(str(expr).split())
    fields = NICKNAMES.get(text.lower(), text)
    if len(fields.split()) != 5:
        raise ReproError(f"--cron: {expr!r} is not a cron expression; allowed: {_CRON_HELP}")
    try:
        next(CronSim(fields, datetime(2026, 1, 1, tzinfo=ZoneInfo("UTC"))))
    except (CronSimError, StopIteration) as exc:
        reason = str(exc) or "never due"
        raise ReproError(f"--cron: {expr!r} is not a cron expression ({reason}); allowed: {_CRON_HELP}") from None
    return fields


def zone(name: str) -> ZoneInfo:
    """The IANA timezone ``name``."""
    try:
        if not name or name != name.strip() or name.startswith(("/", ".")):
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ReproError(
            f"--tz: {name!r} is no IANA timezone; allowed: a name such as UTC, Europe/Berlin, America/New_York"
        ) from None


def _to_utc(dt: datetime) -> datetime:
    return dt.astimezone(ZoneInfo("UTC"))


def _start(sched: Mapping[str, Any]) -> datetime:
    return sched.get("anchor_at") or sched["created_at"]


def latest_due(
    sched: Mapping[str, Any], after: datetime, now: datetime, *, limit: int = 10_000
) -> tuple[datetime | None, int]:
    """The schedule's latest due time in (after, now] (UTC; None when there is none) and how many due times that
    interval holds (counted up to ``limit``): the catch-up runs the latest once and reports the rest as missed."""
    from cronsim import CronSim

    if sched.get("cron"):
        tz = zone(sched.get("timezone") or "UTC")
        ceiling = now.replace(microsecond=0) + timedelta(seconds=1)  # reverse iteration starts strictly before this
        try:
            latest = _to_utc(next(CronSim(sched["cron"], ceiling.astimezone(tz), reverse=True)))
        except StopIteration:
            return None, 0
        if latest <= after:
            return None, 0
        count = 0
        for when in CronSim(sched["cron"], after.astimezone(tz)):
            if _to_utc(when) > latest or count >= limit:
                break
            count += 1
        return latest, max(count, 1)
    every = int(sched.get("every_s") or 0)
    if every <= 0:
        return None, 0
    first = _start(sched)
    last_k = math.floor((now - first).total_seconds() / every)
    latest = first + timedelta(seconds=last_k * every)
    if last_k < 1 or latest <= after:
        return None, 0
    first_k = max(1, math.floor((after - first).total_seconds() / every) + 1)
    return latest, min(last_k - first_k + 1, limit)


def next_due(sched: Mapping[str, Any], after: datetime) -> datetime | None:
    """The first due time strictly after ``after`` (UTC), None when never."""
    from cronsim import CronSim

    if sched.get("cron"):
        tz = zone(sched.get("timezone") or "UTC")
        try:
            return _to_utc(next(CronSim(sched["cron"], after.astimezone(tz))))
        except StopIteration:
            return None
    every = int(sched.get("every_s") or 0)
    if every <= 0:
        return None
    first = _start(sched)
    k = max(1, math.floor((after - first).total_seconds() / every) + 1)
    return first + timedelta(seconds=k * every)


def last_handled(store: Store, sched: Mapping[str, Any]) -> datetime:
    """Due times up to this one are done: the latest claimed due time, or when the schedule was added/resumed."""
    claimed = store.last_due_at(sched["id"])
    start = _start(sched)
    return max(start, claimed) if claimed is not None else start


# --------------------------------------------------------------------------------------------------------- the pin


@dataclass
class Target:
    """What ``repro add`` pins: its kind, canonical reference, a default schedule name and the finished runs."""

    kind: str
    ref: str
    default_name: str
    runs: list[dict[str, Any]]
    note: str = ""


def _looks_like_pipeline(text: str) -> bool:
    from nflab.pipelines import pipeline_path

    return text.endswith((".yaml", ".yml")) or "/" in text or pipeline_path(text).is_file()


def resolve_target(store: Store, target: str, *, seeds: int | None = None) -> Target:
    """The target's finished runs (one per configuration and seed: the newest), at most ``seeds`` seeds per
    configuration. Refuses (``ReproError``) a target that names nothing, or nothing finished."""
    text = str(target).strip()
    if not text:
        raise ReproError(
            "TARGET: '' is empty; allowed: a pipeline file or catalog name, a campaign id or a config hash"
        )
    if _looks_like_pipeline(text):
        found = _pipeline_target(store, text)
    else:
        found = _campaign_target(store, text) or _config_target(store, text)
        if found is None:
            raise ReproError(
                f"TARGET: {text!r} is no pipeline file, campaign id or configuration hash in this store; allowed: a "
                "pipeline file or catalog name, a campaign id (nflab status), a config hash (nflab leaderboard --json)"
            )
    runs = _one_per_seed(found.runs)
    if not runs:
        raise ReproError(
            f"TARGET: {text!r} has no finished runs to pin ({found.note or 'none finished'}); "
            "allowed: a target with finished results (run it first: nflab run ...)"
        )
    if seeds is not None:
        by_config: dict[str, list[dict[str, Any]]] = {}
        for run in runs:
            by_config.setdefault(run["config_hash"], []).append(run)
        short = {h: len(rs) for h, rs in by_config.items() if len(rs) < seeds}
        if short:
            h, n = next(iter(short.items()))
            raise ReproError(
                f"--seeds: {seeds} but configuration {h[:8]} of {text!r} has {n} finished seed(s); "
                f"allowed: at most {min(len(rs) for rs in by_config.values())}"
            )
        runs = [r for rs in by_config.values() for r in sorted(rs, key=lambda r: r["seed"])[:seeds]]
    found.runs = runs
    return found


def _one_per_seed(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    newest: dict[tuple[str, int], dict[str, Any]] = {}
    for run in runs:
        if run["status"] != "finished":
            continue
        key = (run["config_hash"], int(run["seed"]))
        prev = newest.get(key)
        if prev is None or (run.get("finished_at") or run["created_at"]) >= (
            prev.get("finished_at") or prev["created_at"]
        ):
            newest[key] = run
    return sorted(newest.values(), key=lambda r: (r["config_hash"], r["seed"]))


def _pipeline_target(store: Store, text: str) -> Target:
    from nflab.pipelines import campaign_fingerprint, load_pipeline, pipeline_path

    pipeline = load_pipeline(text)  # a PipelineError (bad input) names the file and line
    campaign_id = store.find_campaign_by_fingerprint(campaign_fingerprint(pipeline))
    if campaign_id is None:
        return Target("pipeline", str(pipeline_path(text)), pipeline.name, [], "no campaign of it in this store")
    return Target("pipeline", str(pipeline_path(text)), pipeline.name, store.list_runs(campaign_id))


def _campaign_target(store: Store, text: str) -> Target | None:
    from nflab.store import StoreLookupError

    try:
        camp = store.get_campaign(text)
    except StoreLookupError as exc:
        if "several" in str(exc):
            raise ReproError(f"TARGET: {exc}") from None
        return None
    return Target("campaign", camp["id"], f"{camp['name']}-{camp['id'][:8]}", store.list_runs(camp["id"]))


def _config_target(store: Store, text: str) -> Target | None:
    runs = store.finished_runs_of_config(text)
    hashes = sorted({r["config_hash"] for r in runs})
    if not hashes:
        return None
    if len(hashes) > 1:
        listed = ", ".join(h[:12] for h in hashes[:5])
        raise ReproError(f"TARGET: {text!r} matches several configurations ({listed}); give more of the hash")
    family = runs[0].get("family") or "config"
    return Target("config", hashes[0], f"{family}-{hashes[0][:8]}", runs)


def reference_of(run: Mapping[str, Any]) -> dict[str, Any]:
    """A run's reference entry: test metrics (``"best nats"``…, the ``exact`` budget first), best checkpoint sha256,
    data digest, seed, config hash, device."""
    metrics: dict[str, float] = {}
    budgets: dict[str, str] = {}
    for r in run.get("results") or []:
        if r["split"] != "test" or r["kind"] not in REPORTED_KINDS or r["metric"] in _CERTIFICATES:
            continue
        key = f"{r['kind']} {r['metric']}"
        if key not in metrics or (r["budget"] == "exact" and budgets[key] != "exact"):
            metrics[key], budgets[key] = float(r["value"]), r["budget"]
    best = [c for c in run.get("checkpoints") or [] if c.get("kind") == "best"]
    resources = (run.get("config") or {}).get("resources") or {}
    return {
        "run_key": run["run_key"],
        "run_id": run["id"],
        "campaign_id": run["campaign_id"],
        "config_hash": run["config_hash"],
        "family": run.get("family"),
        "dataset": run.get("dataset"),
        "seed": int(run["seed"]),
        "status": run["status"],
        "error": run.get("error"),
        "metrics": dict(sorted(metrics.items())),
        "best_sha256": max(best, key=lambda c: c["step"])["sha256"] if best else None,
        "data_digest": run.get("data_digest"),
        "device": "gpu" if float(resources.get("gpu") or 0) > 0 else "cpu",
    }


def data_fingerprint(specs: Sequence[Mapping[str, Any]], data_root: str | Path) -> dict[str, Any]:
    """Per dataset: generator and version for synthetic sets, the embedding library's version for ``digits``,
    sha256 of every file under ``<data_root>/<name>`` for file-based sets."""
    import hashlib

    from nflab.flows.data import IMAGE_DATASETS, ONED_TARGETS, TOY_DATASETS
    from nflab.workers.environment import _version

    out: dict[str, Any] = {}
    for spec in specs:
        config = spec["config"]
        name = (config.get("dataset") or {}).get("name") or ((config.get("fit1d") or {}).get("target"))
        if not name or name in out:
            continue
        if name in TOY_DATASETS or name in ONED_TARGETS:
            module = "toy" if name in TOY_DATASETS else "oned"
            out[name] = {"kind": "synthetic", "generator": f"nflab.flows.data.{module}", "version": _version("nflab")}
        elif name == "digits":
            out[name] = {"kind": "embedded", "source": "scikit-learn", "version": _version("scikit-learn")}
        elif name in IMAGE_DATASETS:
            folder = Path(data_root) / name
            files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
            digests = {}
            for path in files:
                h = hashlib.sha256()
                with open(path, "rb") as f:
                    for block in iter(lambda f=f: f.read(1 << 20), b""):
                        h.update(block)
                digests[str(path.relative_to(folder))] = h.hexdigest()
            out[name] = {"kind": "files", "folder": str(folder), "sha256": digests}
        else:
            out[name] = {"kind": "unknown"}
    return out


def _spec_of(run: Mapping[str, Any], campaign: str) -> dict[str, Any]:
    return {
        "campaign": campaign,
        "run_key": run["run_key"],
        "config_hash": run["config_hash"],
        "seed": int(run["seed"]),
        "repeat": int(run.get("repeat") or 0),
        "overrides": {},
        "config": run["config"],
    }


def take_pin(store: Store, target: Target, settings: Settings) -> dict[str, Any]:
    """The pin of ``target`` (module docstring), JSON-ready."""
    from nflab.workers.environment import code_version, environment_fingerprint

    runs = [store.get_run(r["id"]) for r in target.runs]
    specs, seen = [], set()
    for run in runs:
        spec = _spec_of(run, target.default_name)
        while spec["run_key"] in seen:  # runs of one configuration from several campaigns may share a key
            spec["run_key"] += "-" + run["id"][:4]
        seen.add(spec["run_key"])
        specs.append(spec)
    return {
        "version": 1,
        "target": target.ref,
        "kind": target.kind,
        "taken_at": utcnow().isoformat(),
        "specs": specs,
        "reference": [{**reference_of(run), "run_key": spec["run_key"]} for run, spec in zip(runs, specs)],
        "code": code_version(),
        "environment": environment_fingerprint(),
        "data": data_fingerprint(specs, settings.data_root),
    }


# ------------------------------------------------------------------------------------------------------- judging


@dataclass
class Verdict:
    """A check's outcome: status (``VERDICTS``), one-line reason, numbers."""

    status: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test (unequal variances); 1.0 for equal constant samples, 0.0 for different
    constant samples (the test is undefined there)."""
    from scipy import stats

    if statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0:
        return 1.0 if statistics.fmean(a) == statistics.fmean(b) else 0.0
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return 1.0 if math.isnan(p) else p


def _unit(metric_key: str) -> str:
    return metric_key.split(" ", 1)[1] if " " in metric_key else metric_key


def judge(
    pin: Mapping[str, Any],
    observed: Sequence[Mapping[str, Any]],
    environment: Mapping[str, Any],
    *,
    k: float = DEFAULT_K,
    floor: float = DEFAULT_FLOOR,
    alpha: float = ALPHA,
) -> Verdict:
    """Judge the re-run ``observed`` (``reference_of`` entries) against the pin (module docstring)."""
    from nflab.workers.environment import fingerprint_diff

    env_diff = fingerprint_diff(pin.get("environment") or {}, environment)
    reference = list(pin.get("reference") or [])
    details: dict[str, Any] = {"environment_diff": env_diff, "k": k, "floor": floor, "alpha": alpha}
    failed = [o for o in observed if o.get("status") != "finished"]
    if failed or not observed:
        first = failed[0] if failed else None
        reason = (
            f"run {first['run_key']} (seed {first['seed']}) {first.get('status')}: {first.get('error') or 'no reason'}"
            if first
            else "no run of the pin came back"
        )
        if len(failed) > 1:
            reason += f" (and {len(failed) - 1} more)"
        details["failed_runs"] = [{"run_key": o["run_key"], "error": o.get("error")} for o in failed]
        return Verdict("failed", reason, details)
    exact = not env_diff and all(r.get("device") == "cpu" for r in reference)
    details["tier"] = "exact" if exact else "statistical"
    if exact:
        verdict = _exact(reference, observed, details)
    else:
        verdict = _statistical(reference, observed, details, k=k, floor=floor, alpha=alpha)
    if verdict.status == "reproduced" and env_diff:
        shown = "; ".join(env_diff[:4]) + (f" (+{len(env_diff) - 4} more)" if len(env_diff) > 4 else "")
        return Verdict("env-changed", f"environment changed ({shown}); {verdict.reason}", details)
    if verdict.status == "drift" and env_diff:
        verdict.reason += f"; environment changed: {'; '.join(env_diff[:3])}"
    return verdict


def _match(reference: Sequence[Mapping[str, Any]], observed: Sequence[Mapping[str, Any]]) -> list[tuple[Any, Any]]:
    by_key = {(o["config_hash"], o["seed"]): o for o in observed}
    return [(r, by_key.get((r["config_hash"], r["seed"]))) for r in reference]


def _exact(reference: Sequence[Mapping[str, Any]], observed: Sequence[Mapping[str, Any]], details: dict) -> Verdict:
    """Every number and hash identical."""
    diffs: list[str] = []
    worst: dict[str, Any] | None = None
    for ref, obs in _match(reference, observed):
        if obs is None:
            diffs.append(f"seed {ref['seed']} of {ref['config_hash'][:8]}: not re-run")
            continue
        for key, value in ref["metrics"].items():
            got = obs["metrics"].get(key)
            if got is None or got != value:
                diffs.append(f"{ref['run_key']} {key}: {value!r} → {got!r}")
                if got is not None and (worst is None or abs(got - value) > abs(worst["delta"])):
                    worst = {"metric": key, "delta": got - value, "sigmas": None, "reference": value, "observed": got}
        for key in ("best_sha256", "data_digest"):
            if ref.get(key) and ref.get(key) != obs.get(key):
                diffs.append(
                    f"{ref['run_key']} {key.replace('_', ' ')}: {ref[key][:12]}… → {(obs.get(key) or '—')[:12]}…"
                )
    details["differences"] = diffs
    details["worst"] = worst
    n = len(reference)
    if diffs:
        more = f" (+{len(diffs) - 3} more)" if len(diffs) > 3 else ""
        return Verdict("drift", f"exact tier: {'; '.join(diffs[:3])}{more}", details)
    return Verdict("reproduced", f"exact tier: {n} run(s) identical (metrics, best checkpoint, data)", details)


def _statistical(
    reference: Sequence[Mapping[str, Any]],
    observed: Sequence[Mapping[str, Any]],
    details: dict,
    *,
    k: float,
    floor: float,
    alpha: float,
) -> Verdict:
    """Per configuration and metric: |Δmean| ≤ k·max(σ_ref, floor), and Welch's test with ≥ 3 seeds each side."""
    groups: dict[tuple[str, str], tuple[list[float], list[float], str]] = {}
    for ref, obs in _match(reference, observed):
        label = f"{ref.get('family') or '?'} [{ref['config_hash'][:8]}]"
        for key, value in ref["metrics"].items():
            refs, obss, _ = groups.setdefault((ref["config_hash"], key), ([], [], label))
            refs.append(value)
            if obs is not None and obs["metrics"].get(key) is not None:
                obss.append(obs["metrics"][key])
    rows, out = [], []
    for (config_hash, key), (refs, obss, label) in sorted(groups.items()):
        if not obss:
            out.append(f"{key} of {label}: no re-run value")
            continue
        mean_ref, mean_obs = statistics.fmean(refs), statistics.fmean(obss)
        sd = statistics.stdev(refs) if len(refs) > 1 else 0.0
        sigma = max(sd, floor)
        delta = mean_obs - mean_ref
        z = delta / sigma if sigma > 0 else (0.0 if delta == 0 else math.inf)
        p = welch_p(refs, obss) if min(len(refs), len(obss)) >= MIN_SEEDS_FOR_TEST else None
        ok = abs(delta) <= k * sigma and (p is None or p >= alpha)
        row = {"config_hash": config_hash, "metric": key, "label": label, "reference_mean": mean_ref,
               "reference_sd": sd, "n_reference": len(refs), "observed_mean": mean_obs, "n_observed": len(obss),
               "delta": delta, "sigmas": z, "welch_p": p, "within": ok}  # fmt: skip
        rows.append(row)
        if not ok:
            test = "" if p is None else f"; Welch p={p:.3g}"
            out.append(
                f"{key} of {label}: reference {mean_ref:.4f} ± {sd:.4f} ({len(refs)} seeds), observed {mean_obs:.4f}: "
                f"Δ {delta:+.4f} ({z:+.1f}σ, tolerance {k:g}σ with σ ≥ {floor:g}){test}"
            )
    details["comparisons"] = rows
    bad = [r for r in rows if not r["within"]]
    pool = bad or rows
    worst = max(pool, key=lambda r: abs(r["sigmas"])) if pool else None
    details["worst"] = (
        None
        if worst is None
        else {"metric": worst["metric"], "delta": worst["delta"], "sigmas": worst["sigmas"],
              "reference": worst["reference_mean"], "observed": worst["observed_mean"]}
    )  # fmt: skip
    if out:
        more = f" (+{len(out) - 2} more)" if len(out) > 2 else ""
        return Verdict("drift", "statistical tier: " + "; ".join(out[:2]) + more, details)
    top = f"; largest Δ {worst['delta']:+.4f} {_unit(worst['metric'])} ({worst['sigmas']:+.1f}σ)" if worst else ""
    return Verdict("reproduced", f"statistical tier: {len(rows)} comparison(s) within {k:g}σ{top}", details)


def badge(check: Mapping[str, Any] | None) -> str:
    """The leaderboard's repro cell: ``✔ reproduced 2026-12-01``, ``✘ drift +0.12 nats (4.1σ)``…"""
    if check is None:
        return "pinned, not yet checked"
    when = check.get("finished_at") or check["created_at"]
    day = str(when)[:10]  # a datetime, or its ISO text (from JSON)
    status = check["status"]
    if status == "reproduced":
        return f"✔ reproduced {day}"
    if status == "drift":
        worst = (check.get("details") or {}).get("worst")
        if worst:
            unit = _unit(worst["metric"])
            size = "exact tier" if worst.get("sigmas") is None else f"{worst['sigmas']:.1f}σ"
            return f"✘ drift {worst['delta']:+.2g} {unit} ({size}) {day}"
        return f"✘ drift {day}"
    if status == "env-changed":
        return f"≈ env-changed {day}"
    return f"✘ {status} {day}"


# ------------------------------------------------------------------------------------------------ running checks


def host_name() -> str:
    return socket.gethostname()


def is_abandoned(now: datetime) -> Callable[[Mapping[str, Any]], str | None]:
    """A running check's staleness rule at ``now``: why it is abandoned, or None while it may still be running."""
    here = host_name()

    def rule(row: Mapping[str, Any]) -> str | None:
        pid = row.get("pid")
        if row.get("host") == here and pid and pid != os.getpid() and not _alive(int(pid)):
            return f"abandoned: process {pid} on {here} ended without a verdict"
        if now - row["created_at"] > STALE_AFTER:
            return f"abandoned: no verdict within {STALE_AFTER.total_seconds() / 3600:g} h"
        return None

    return rule


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def execute_check(
    store: Store,
    settings: Settings,
    sched: Mapping[str, Any],
    check: Mapping[str, Any],
    *,
    address: str | None = None,
    runs: Callable[..., None] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run a claimed check: the pinned specs as a fresh campaign, then the verdict, written once. Returns the row.

    An exception becomes a ``failed`` verdict with its reason; an interrupt (Ctrl-C, SIGTERM) ``cancelled``, then
    goes on."""
    from nflab.workers.environment import environment_fingerprint

    started = time.monotonic()
    campaign_id = None
    try:
        pin = sched.get("pin")
        if not pin or not pin.get("specs"):
            raise ReproError(f"schedule {sched['name']!r} has no pin (added before pins existed): remove and add it")
        campaign_id = _start_campaign(store, settings, sched, check, pin)
        from nflab.campaign import run_campaign, stored_campaign

        prepared = stored_campaign(store, campaign_id)
        run_campaign(prepared, settings, store=store, campaign_id=campaign_id, address=address, runs=runs)
        observed = [reference_of(store.get_run(r["id"])) for r in store.list_runs(campaign_id)]
        k = float(sched.get("k_sigma") or DEFAULT_K)
        floor = DEFAULT_FLOOR if sched.get("tolerance") is None else float(sched["tolerance"])
        verdict = judge(pin, observed, environment_fingerprint(), k=k, floor=floor)
    except (KeyboardInterrupt, SystemExit) as exc:
        how = "interrupted" if isinstance(exc, KeyboardInterrupt) else "stopped"
        store.finish_check(
            check["id"], status="cancelled", reason=f"{how} before a verdict", finished_at=utcnow(),
            details={"seconds": round(time.monotonic() - started, 3), **(extra or {})},
        )  # fmt: skip
        raise
    except Exception as exc:
        from nflab.settings import redact
        from nflab.store import StoreLookupError

        reason = redact(" ".join(str(exc).split())) or type(exc).__name__  # a URL's password never reaches a row
        if not isinstance(exc, ReproError | StoreLookupError):
            reason = f"{type(exc).__name__}: {reason}"
        verdict = Verdict("failed", f"the check could not run: {reason[:500]}", {})
    verdict.details.update(seconds=round(time.monotonic() - started, 3), **(extra or {}))
    store.finish_check(
        check["id"], status=verdict.status, reason=verdict.reason, details=verdict.details, finished_at=utcnow()
    )
    store.mark_schedule_run(sched["id"])
    return next(c for c in store.list_repro_checks(sched["id"], limit=1000) if c["id"] == check["id"])


def _start_campaign(
    store: Store, settings: Settings, sched: Mapping[str, Any], check: Mapping[str, Any], pin: Mapping[str, Any]
) -> str:
    """A fresh campaign holding the pinned runs (its id recorded on the check before any run starts)."""
    import json

    from nflab.campaign import PreparedCampaign, open_campaign
    from nflab.store import REPRO_FINGERPRINT_PREFIX

    name = f"repro-{sched['name']}"[:200]
    specs = [{**s, "campaign": name} for s in pin["specs"]]
    text = "# nflab repro check: the pinned runs\n" + json.dumps(
        {"schedule": sched["name"], "check": check["id"], "target": pin.get("target")}
    )
    fingerprint = f"{REPRO_FINGERPRINT_PREFIX}{sched['id']}:{check['id']}"  # keeps its runs off the leaderboard
    prepared = PreparedCampaign(name, specs, text, fingerprint, name)
    campaign_id = open_campaign(store, prepared, settings, fresh=True)
    store.finish_check(check["id"], campaign_id=campaign_id)
    from nflab.workers.environment import code_version_label

    store.add_runs(campaign_id, specs, code_version=code_version_label())
    return campaign_id


Execute = Callable[..., dict[str, Any]]


def run_named(
    store: Store, settings: Settings, name: str, *, now: datetime | None = None, execute: Execute = execute_check,
    address: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """``repro run NAME``: a manual check now (skipped, and recorded, while another check of it is running)."""
    sched = store.get_schedule(name)
    now = now or utcnow()
    claim = store.claim_check(
        sched["id"], None, trigger="manual", host=host_name(), pid=os.getpid(), is_stale=is_abandoned(now)
    )
    if claim is None:  # pragma: no cover - NULL due times never collide
        raise ReproError(f"schedule {name!r}: could not claim a manual check")
    if claim["status"] == "skipped":
        return claim
    return execute(store, settings, sched, claim, address=address)


def tick(
    store: Store,
    settings: Settings,
    now: datetime | None = None,
    *,
    execute: Execute = execute_check,
    address: str | None = None,
    log: Callable[[str], None] | None = None,
    on_claim: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """``repro run --due``: for every enabled schedule that is due at ``now``, claim its latest due time and run
    its check (missed due times run once). Returns the checks this call wrote (run, skipped), in order."""
    now = now or utcnow()
    out = []
    for sched in store.list_schedules(enabled_only=True):
        if not sched.get("cron") and not sched.get("every_s"):
            continue
        due, count = latest_due(sched, last_handled(store, sched), now)
        if due is None:
            continue
        claim = store.claim_check(
            sched["id"], due, trigger="due", host=host_name(), pid=os.getpid(), is_stale=is_abandoned(now)
        )
        if claim is None:
            if log:
                log(f"{sched['name']}: due {due:%Y-%m-%d %H:%M} UTC was claimed by another process")
            continue
        if on_claim:
            on_claim(claim)
        if claim["status"] == "skipped":
            if log:
                log(f"{sched['name']}: skipped due {due:%Y-%m-%d %H:%M} UTC: {claim['reason']}")
            out.append(claim)
            continue
        if log:
            log(f"{sched['name']}: check {claim['id']} for due {due:%Y-%m-%d %H:%M} UTC started")
        extra = {"missed": count - 1} if count > 1 else {}
        try:
            row = execute(store, settings, sched, claim, address=address, extra=extra)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # the executor itself broke: the claim must not stay running
            from nflab.settings import redact

            reason = redact(f"{type(exc).__name__}: {exc}")[:500]
            store.finish_check(claim["id"], status="failed", reason=reason, finished_at=utcnow())
            row = {**claim, "status": "failed", "reason": reason}
        if log:
            log(f"{sched['name']}: check {row['id']} {row['status']}: {row.get('reason') or ''}")
        out.append(row)
    return out


def seconds_to_next_due(store: Store, now: datetime) -> float | None:
    """Seconds from ``now`` to the earliest next due time of the enabled schedules (None without any)."""
    soonest = None
    for sched in store.list_schedules(enabled_only=True):
        try:
            when = next_due(sched, max(now, last_handled(store, sched)))
        except ReproError:
            continue
        if when is not None and (soonest is None or when < soonest):
            soonest = when
    return None if soonest is None else max(0.0, (soonest - now).total_seconds())


BACKOFF_MIN_S, BACKOFF_MAX_S = 1.0, 300.0


def run_daemon(
    store: Store,
    settings: Settings,
    stop: threading.Event,
    *,
    poll_s: float = 60.0,
    log: Callable[[str], None] = print,
    now: Callable[[], datetime] = utcnow,
    execute: Execute = execute_check,
    address: str | None = None,
    busy: Callable[[bool], None] | None = None,
    backoff_s: tuple[float, float] = (BACKOFF_MIN_S, BACKOFF_MAX_S),
) -> None:
    """The embedded scheduler: tick, then sleep until the next due time (at most ``poll_s``: schedules added
    meanwhile are seen), until ``stop`` is set. A check that fails is a verdict and the loop goes on; an error of
    the database (lost connection, server restarting) is logged and retried with exponential back-off
    (``backoff_s``: the first wait, doubling up to the second); anything else is logged and retried at the next
    poll."""
    from sqlalchemy.exc import DBAPIError

    backoff = backoff_s[0]
    while not stop.is_set():
        wait = poll_s
        try:
            if busy:
                busy(True)
            try:
                tick(store, settings, now(), execute=execute, address=address, log=log)
            finally:
                if busy:
                    busy(False)
            backoff = backoff_s[0]
            soonest = seconds_to_next_due(store, now())
            if soonest is not None:
                wait = min(poll_s, max(soonest, 0.5))
        except DBAPIError as exc:
            reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
            from nflab.settings import redact

            log(f"database unreachable ({redact(reason)}); retrying in {backoff:g} s")
            wait, backoff = backoff, min(backoff * 2, backoff_s[1])
        except ReproError as exc:
            log(f"error: {exc}")
        except Exception as exc:
            log(f"tick failed ({type(exc).__name__}: {' '.join(str(exc).split())[:300]}); retrying in {poll_s:g} s")
        stop.wait(wait)


def config_badges(store: Store) -> dict[str, str]:
    """config hash → the repro badge of the newest verdict among the schedules that pin it (``badge``)."""
    latest = store.latest_verdicts()
    chosen: dict[str, tuple[Any, str]] = {}
    for sched in store.list_schedules():
        check = latest.get(sched["id"])
        when = None if check is None else (check.get("finished_at") or check["created_at"])
        for spec in (sched.get("pin") or {}).get("specs") or []:
            prev = chosen.get(spec["config_hash"])
            if prev is None or (when is not None and (prev[0] is None or when > prev[0])):
                chosen[spec["config_hash"]] = (when, badge(check))
    return {h: text for h, (_, text) in chosen.items()}
