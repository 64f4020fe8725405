"""``nflab repro``: pin a result and re-run it on a schedule (``nflab.repro`` has the rules).

``add TARGET`` · ``list`` · ``show NAME`` · ``run NAME | --due`` (exit 1 on drift, env-changed or failed) ·
``pause|resume|remove NAME`` · ``daemon`` (the embedded scheduler, until SIGTERM/SIGINT).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from datetime import datetime
from typing import Annotated, Any

import typer

from nflab.cli import (
    EXIT_OK,
    EXIT_RUN_FAILED,
    BadInput,
    _guard,
    _print_json,
    _settings,
    _store,
    app,
    console,
    err_console,
)
from nflab.repro import DEFAULT_FLOOR, DEFAULT_K
from nflab.richtext import SafeTable, plain

repro_app = typer.Typer(no_args_is_help=True, help="Scheduled reproducibility runs: pin a result, re-run, judge.")
app.add_typer(repro_app, name="repro")

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
NameArg = Annotated[str, typer.Argument(help="the schedule (name or id; nflab repro list)")]
AddressOpt = Annotated[str | None, typer.Option(help="Ray address (default: RAY_ADDRESS or a local Ray)")]
STYLE = {"reproduced": "green", "drift": "red", "failed": "red", "env-changed": "yellow", "skipped": "dim"}


def _when(value: datetime | None) -> str:
    return "" if value is None else f"{value:%Y-%m-%d %H:%M} UTC"


def _summary(store: Any, sched: dict[str, Any], now: datetime, last: dict[str, Any] | None) -> dict[str, Any]:
    from nflab import repro

    pin = sched.get("pin") or {}
    try:
        nxt = repro.next_due(sched, max(now, repro.last_handled(store, sched))) if sched["enabled"] else None
    except repro.ReproError:
        nxt = None
    return {
        "id": sched["id"],
        "name": sched["name"],
        "target": sched["target"],
        "target_kind": sched["target_kind"],
        "cron": sched["cron"] or (f"every {sched['every_s']} s" if sched.get("every_s") else None),
        "timezone": sched["timezone"],
        "enabled": sched["enabled"],
        "next_due": nxt,
        "runs": len(pin.get("specs") or []),
        "configurations": len({s["config_hash"] for s in pin.get("specs") or []}),
        "k_sigma": sched["k_sigma"],
        "floor": sched["tolerance"],
        "last_verdict": None if last is None else last["status"],
        "last_checked": None if last is None else (last.get("finished_at") or last["created_at"]),
        "badge": None if last is None else repro.badge(last),
    }


@repro_app.command("add")
def add(
    target: Annotated[str, typer.Argument(help="a pipeline file or catalog name, a campaign id, or a config hash")],
    cron: Annotated[str, typer.Option(help="cron expression or @hourly/@daily/@weekly/@monthly/@yearly")] = "@weekly",
    tz: Annotated[str, typer.Option("--tz", help="IANA timezone the cron expression is read in")] = "UTC",
    seeds: Annotated[
        int | None, typer.Option(min=1, help="pin this many seeds per configuration (default: all)")
    ] = None,
    name: Annotated[str | None, typer.Option(help="schedule name (default: from the target)")] = None,
    k: Annotated[float, typer.Option(min=0.0, help="statistical tier: tolerance in σ")] = DEFAULT_K,
    floor: Annotated[float, typer.Option(min=0.0, help="statistical tier: smallest σ (metric units)")] = DEFAULT_FLOOR,
    json_out: JsonOpt = False,
) -> None:
    """Pin a target's finished results (specs, seeds, reference numbers, code, environment, data) on a schedule."""

    def body() -> int:
        from nflab import repro
        from nflab.db_models import utcnow

        cron_fields = repro.normalize_cron(cron)  # bad input (ReproError): one line, exit 2
        repro.zone(tz)
        if name is not None and not name.strip():
            raise BadInput("--name: '' is empty; allowed: a short name such as e2-quick-weekly")
        settings = _settings()
        store = _store(settings)
        found = repro.resolve_target(store, target, seeds=seeds)
        chosen = (name or found.default_name).strip()[:200]
        if any(s["name"] == chosen for s in store.list_schedules()):
            raise BadInput(f"--name: {chosen!r} is taken; allowed: a new name (nflab repro list shows the taken ones)")
        pin = repro.take_pin(store, found, settings)
        now = utcnow()
        sid = store.add_schedule(
            chosen, found.ref, cron=cron_fields, timezone=tz, target_kind=found.kind, k_sigma=k, tolerance=floor,
            pin=pin, anchor_at=now, code_version=(pin["code"].get("commit") or pin["code"]["version"])[:100],
        )  # fmt: skip
        shown = _summary(store, store.get_schedule(sid), now, None)
        if json_out:
            _print_json(shown)
        else:
            console.print(
                f"added schedule {chosen}: {found.kind} {found.ref}, {shown['runs']} runs "
                f"({shown['configurations']} configurations), cron '{cron_fields}' {tz}, "
                f"next due {_when(shown['next_due'])}",
                highlight=False,
            )
        return EXIT_OK

    _guard(body)


@repro_app.command("list")
def list_(json_out: JsonOpt = False) -> None:
    """Schedules: target, cron, next due, last verdict and its date."""

    def body() -> int:
        from nflab.db_models import utcnow

        store = _store(_settings())
        last = store.latest_verdicts()
        now = utcnow()
        rows = [_summary(store, s, now, last.get(s["id"])) for s in store.list_schedules()]
        if json_out:
            _print_json(rows)
            return EXIT_OK
        table = SafeTable(title="repro schedules")
        for col in ("name", "target", "cron", "next due", "runs", "last verdict"):
            table.add_column(col)
        for r in rows:
            cron = f"{r['cron']} {r['timezone']}" + ("" if r["enabled"] else " (paused)")
            verdict = plain(r["badge"] or "not yet checked", STYLE.get(r["last_verdict"] or "", ""))
            table.add_row(r["name"], f"{r['target_kind']} {r['target'][:40]}", cron, _when(r["next_due"]),
                          str(r["runs"]), verdict)  # fmt: skip
        console.print(table)
        return EXIT_OK

    _guard(body)


@repro_app.command("show")
def show(
    name: NameArg,
    limit: Annotated[int, typer.Option(min=1, help="newest checks shown")] = 50,
    json_out: JsonOpt = False,
) -> None:
    """A schedule, its pin and the history of its checks with their numbers."""

    def body() -> int:
        from nflab.db_models import utcnow

        store = _store(_settings())
        sched = store.get_schedule(name)
        checks = store.list_repro_checks(sched["id"], limit=limit)
        verdicts = [c for c in checks if c["status"] in ("reproduced", "drift", "env-changed", "failed")]
        summary = _summary(store, sched, utcnow(), verdicts[0] if verdicts else None)
        if json_out:
            _print_json({**summary, "pin": sched.get("pin"), "checks": checks})
            return EXIT_OK
        pin = sched.get("pin") or {}
        code = pin.get("code") or {}
        console.print(
            f"{sched['name']}: {sched['target_kind']} {sched['target']} · cron '{summary['cron']}' {sched['timezone']}"
            f" · next due {_when(summary['next_due']) or '—'} · k={sched['k_sigma']:g}, floor={sched['tolerance']}"
            f" · pinned {pin.get('taken_at', '—')[:19]} at {code.get('commit') or code.get('version')}"
            f"{' (dirty)' if code.get('dirty') else ''}",
            highlight=False,
        )
        table = SafeTable(title=f"checks of {sched['name']} (newest first)")
        for col in ("check", "due", "trigger", "status", "seconds", "campaign", "reason"):
            table.add_column(col)
        for c in checks:
            seconds = (c.get("details") or {}).get("seconds")
            status = plain(c["status"], STYLE.get(c["status"], ""))
            table.add_row(str(c["id"]), _when(c["due_at"]), c["trigger"], status,
                          "" if seconds is None else f"{seconds:.1f}", (c["campaign_id"] or "")[:8],
                          c.get("reason") or "")  # fmt: skip
        console.print(table)
        return EXIT_OK

    _guard(body)


@repro_app.command("run")
def run(
    name: Annotated[str | None, typer.Argument(help="the schedule to check now (or --due)")] = None,
    due: Annotated[bool, typer.Option("--due", help="check every schedule that is due now")] = False,
    address: AddressOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check one schedule now, or every schedule that is due; exit 1 on drift, env-changed or failed."""

    def body() -> int:
        from nflab import repro

        if (name is None) == (not due):
            raise BadInput("NAME: give a schedule name or --due, not both; allowed: nflab repro run NAME | --due")
        settings = _settings()
        store = _store(settings)
        if due:
            rows = repro.tick(store, settings, address=address, log=None if json_out else _log)
        else:
            store.get_schedule(name)  # an unknown name: one line, exit 2, before anything starts
            rows = [repro.run_named(store, settings, name, address=address)]  # type: ignore[arg-type]
        if json_out:
            _print_json(rows)
        else:
            for r in rows:
                console.print(
                    plain(f"check {r['id']} {r['status']}: {r.get('reason') or ''}", STYLE.get(r["status"], "")),
                    highlight=False,
                )
            if not rows:
                console.print("nothing due", highlight=False)
        return EXIT_RUN_FAILED if any(r["status"] in repro.BAD_VERDICTS for r in rows) else EXIT_OK

    _guard(body)


def _log(line: str) -> None:
    from nflab.db_models import utcnow

    err_console.print(f"{utcnow():%Y-%m-%d %H:%M:%S} {line}", highlight=False, markup=False, soft_wrap=True)


def _set_enabled(name: str, enabled: bool) -> None:
    def body() -> int:
        from nflab.db_models import utcnow

        store = _store(_settings())
        sched = store.get_schedule(name)
        fields: dict[str, Any] = {"enabled": enabled}
        if enabled and not sched["enabled"]:
            fields["anchor_at"] = utcnow()  # due times that passed while paused are not caught up
        store.update_schedule(sched["id"], **fields)
        console.print(f"{sched['name']}: {'resumed' if enabled else 'paused'}", highlight=False)
        return EXIT_OK

    _guard(body)


@repro_app.command("pause")
def pause(name: NameArg) -> None:
    """Stop checking a schedule (its pin and checks are kept)."""
    _set_enabled(name, False)


@repro_app.command("resume")
def resume(name: NameArg) -> None:
    """Check a paused schedule again, from its next due time on (missed ones are not caught up)."""
    _set_enabled(name, True)


@repro_app.command("remove")
def remove(name: NameArg) -> None:
    """Delete a schedule and its checks (the checks' campaigns stay)."""

    def body() -> int:
        store = _store(_settings())
        sched = store.get_schedule(name)
        store.delete_schedule(sched["id"])
        console.print(f"removed schedule {sched['name']}", highlight=False)
        return EXIT_OK

    _guard(body)


@repro_app.command("daemon")
def daemon(
    poll: Annotated[float, typer.Option(min=0.1, help="seconds between looks for new or changed schedules")] = 60.0,
    address: AddressOpt = None,
) -> None:
    """Run due checks until stopped (SIGTERM or Ctrl-C stop it cleanly; a check in progress is cancelled)."""

    def body() -> int:
        from nflab import repro

        settings = _settings()
        store = _store(settings)
        stop = threading.Event()
        state = {"busy": False}

        def on_signal(signum: int, _frame: Any) -> None:
            stop.set()
            if state["busy"]:
                raise KeyboardInterrupt  # cancels the check in progress (recorded as cancelled)

        def install() -> None:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, on_signal)

        def busy(flag: bool) -> None:
            state["busy"] = flag
            if not flag:
                install()  # Ray's start-up may have replaced the handlers

        install()
        _log(f"repro daemon started (pid {os.getpid()}, poll {poll:g} s)")
        with contextlib.suppress(KeyboardInterrupt, SystemExit):  # a stop request: leave the loop cleanly
            repro.run_daemon(store, settings, stop, poll_s=poll, log=_log, address=address, busy=busy)
        _log("repro daemon stopped")
        sys.stdout.flush()
        return EXIT_OK

    _guard(body)
