"""``nflab tune``: run a study (``nflab tune PIPELINE``), ``nflab tune list``, ``nflab tune show STUDY`` and
``nflab tune promote STUDY`` (the best configuration as an ordinary campaign of several seeds)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from nflab.cli import (
    EXIT_OK,
    EXIT_RUN_FAILED,
    BadInput,
    _guard,
    _print_json,
    _runs_table,
    _settings,
    _store,
    _store_while_ray_starts,
    app,
    console,
    err_console,
    progress_bar,
)
from nflab.richtext import SafeTable, plain

READ_ACTIONS = ("list", "show", "promote")


@app.command()
def tune(
    target: Annotated[str, typer.Argument(help="a pipeline with a tune section, or: list | show | promote")],
    study: Annotated[str | None, typer.Argument(help="the study (show, promote)")] = None,
    trials: Annotated[int | None, typer.Option(min=1, help="total trials (overrides tune.trials)")] = None,
    parallel: Annotated[int | None, typer.Option(min=1, help="trials at a time (overrides tune.parallel)")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="override: dotted.path=value (repeatable)")] = [],  # noqa: B006
    seeds: Annotated[int, typer.Option(min=1, help="promote: seeds of the promoted configuration")] = 5,
    trial: Annotated[int | None, typer.Option(help="promote: this trial (a Pareto point) instead of the best")] = None,
    address: Annotated[str | None, typer.Option(help="Ray address (default: RAY_ADDRESS or a local Ray)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Tune a pipeline's options with an Optuna study (each trial an nflab run on Ray); list, show or promote studies.

    Re-running the same pipeline resumes its study; the total number of trials is honoured."""

    def body() -> int:
        settings = _settings()
        if target == "list":
            return _list(settings, json_out)
        if target in ("show", "promote"):
            if study is None:
                raise BadInput(f"STUDY: missing; nflab tune {target} STUDY (nflab tune list names them)")
            if target == "show":
                return _show(settings, study, json_out)
            return _promote(settings, study, seeds, trial, address, json_out)
        return _run(Path(target), set_, trials, parallel, address, json_out)

    _guard(body)


def _wrap_lookup(fn: Any) -> Any:
    from nflab.tune import StudyNotFound

    try:
        return fn()
    except StudyNotFound as exc:
        raise BadInput(str(exc)) from None


def _run(path: Path, overrides: list[str], trials: int | None, parallel: int | None, address: str | None,
         json_out: bool) -> int:  # fmt: skip
    from nflab.tune import best_trials, prepare_study, run_study, show_study
    from nflab.workers.raynet import check_address

    settings = _settings()
    prep = prepare_study(path, overrides, settings, trials=trials, parallel=parallel)  # nothing written yet
    check_address(address or settings.ray_address)
    from nflab.campaign import PreparedCampaign, check_resources
    from nflab.pipelines import expand
    from nflab.workers import node_capacities

    # the study's plots are drawn at its end: their modules load while Ray starts, not after the last trial
    # (scikit-learn, 2-3 s, is what Optuna's fANOVA importances import on first use); nothing is written before the
    # resources are checked
    plotting = ("optuna.visualization", "optuna.visualization.matplotlib", "sklearn.ensemble")
    _store_while_ray_starts(settings, address, warm=plotting, open_store=False)
    base = [s.model_dump(mode="json") for s in expand(prep.pipeline)]  # every trial asks for these resources
    check_resources(PreparedCampaign(prep.name, base, "", "", prep.filename), node_capacities())
    store = _store(settings)
    counts = {"finished": 0, "pruned": 0, "failed": 0}
    best: list[float | None] = [None]
    sign = 1 if prep.tune.objective.direction == "minimize" else -1
    quiet = json_out or not sys.stderr.isatty()
    with progress_bar(disable=json_out) as progress:
        bar = progress.add_task(f"{prep.name} trials", total=prep.tune.trials, info="")

        def info() -> str:
            b = "—" if best[0] is None else f"{best[0]:.4f}"
            return f"{counts['pruned']} pruned, {counts['failed']} failed, best {prep.tune.objective.metric} {b}"

        def on_event(kind: str, data: dict[str, Any]) -> None:
            if kind == "finished":
                counts["finished"] += 1
                value = data["values"][0]
                if best[0] is None or sign * value < sign * best[0]:
                    best[0] = value
            elif kind == "pruned":
                counts["pruned"] += 1
            elif kind == "failed":
                counts["failed"] += 1
                if not quiet:
                    progress.console.print(f"trial {data['trial']} failed: {data['reason']}", highlight=False)
            elif kind == "recovered" and not quiet:
                progress.console.print(f"resumed: trials {data['trials']} were interrupted and are enqueued again")
            if kind in ("finished", "pruned", "failed"):
                progress.advance(bar)
            progress.update(bar, info=info())

        from nflab.tune import counted_trials, load

        with contextlib.suppress(LookupError):  # a resumed study: its counted trials are done
            progress.update(bar, completed=len(counted_trials(load(settings, prep.name))))
        outcome = run_study(prep, settings, store=store, on_event=on_event, address=address)
    shown = show_study(settings, prep.name)
    if json_out:
        _print_json(shown)
    else:
        console.print(_trials_table(shown, best_only=True))
        if outcome.plots:
            console.print(f"plots: {Path(outcome.plots[0]).parent}", highlight=False)
        console.print(f"promote the best with: nflab tune promote {prep.name}", highlight=False)
    return EXIT_OK if best_trials(load(settings, prep.name)) else EXIT_RUN_FAILED


def _trials_table(shown: dict[str, Any], *, best_only: bool = False) -> SafeTable:
    objectives = shown.get("objectives") or ["value"]
    rows = shown["best"] if best_only else shown["trials"]
    title = f"study {shown['name']} — " + ", ".join(f"{k} {v}" for k, v in shown["counts"].items())
    table = SafeTable(title=("best of " if best_only else "") + title)
    for col in ("trial", "state", *objectives, "params", "run", "steps", "note"):
        table.add_column(col)
    for r in rows:
        values = r["values"] or [None] * len(objectives)
        style = {"complete": "green", "fail": "red", "pruned": "yellow"}.get(r["state"], "")
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["params"].items())
        note = r["reason"] or ("" if r["feasible"] else "infeasible")
        table.add_row(
            str(r["number"]), plain(r["state"], style), *["" if v is None else f"{v:.4f}" for v in values],
            params, r["run_key"] or "", str(r["steps"] or ""), (note or "")[:80],
        )  # fmt: skip
    return table


def _list(settings: Any, json_out: bool) -> int:
    from nflab.tune import list_studies

    studies = list_studies(settings)
    if json_out:
        _print_json(studies)
        return EXIT_OK
    from nflab.settings import redact

    table = SafeTable(title=f"studies in {redact(settings.optuna_url)}")
    for col in ("study", "objectives", "trials", "states", "best"):
        table.add_column(col)
    for s in studies:
        best = "; ".join(", ".join(f"{v:.4f}" for v in b) for b in s["best"][:3])
        states = ", ".join(f"{k} {v}" for k, v in s["counts"].items())
        table.add_row(s["name"], ", ".join(s["objectives"] or []), str(s["trials"]), states, best)
    console.print(table)
    return EXIT_OK


def _show(settings: Any, name: str, json_out: bool) -> int:
    from nflab.tune import show_study

    shown = _wrap_lookup(lambda: show_study(settings, name))
    if json_out:
        _print_json(shown)
        return EXIT_OK
    console.print(_trials_table(shown))
    space = ", ".join(f"{k} {v}" for k, v in (shown["space"] or {}).items())
    console.print(f"space: {space}", highlight=False)
    for p in shown["plots"]:
        console.print(f"plot: {p}", highlight=False)
    return EXIT_OK


def _promote(settings: Any, name: str, seeds: int, trial: int | None, address: str | None, json_out: bool) -> int:
    from nflab.campaign import PreparedCampaign, open_campaign, run_campaign
    from nflab.pipelines import campaign_fingerprint, check_dataset_available, expand
    from nflab.tune import promote_pipeline

    pipeline = _wrap_lookup(lambda: promote_pipeline(settings, name, seeds=seeds, trial=trial))
    check_dataset_available(pipeline, str(settings.data_root))
    specs = [s.model_dump(mode="json") for s in expand(pipeline)]
    prepared = PreparedCampaign(pipeline.name, specs, pipeline._source, campaign_fingerprint(pipeline),
                                f"{pipeline.name}.yaml", pipeline)  # fmt: skip
    store = _store(settings)
    campaign_id = open_campaign(store, prepared, settings)
    err_console.print(f"promoting {name}: {len(specs)} runs (campaign {campaign_id[:8]})", highlight=False)
    outcome = run_campaign(prepared, settings, store=store, campaign_id=campaign_id, address=address)
    if json_out:
        _print_json({"campaign_id": campaign_id, "runs": store.list_runs(campaign_id), "failed": outcome.failed})
    else:
        console.print(_runs_table(store, campaign_id, title=f"campaign {campaign_id[:8]} — {pipeline.name}"))
    return EXIT_RUN_FAILED if outcome.failed else EXIT_OK
