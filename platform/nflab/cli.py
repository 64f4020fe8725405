"""The ``nflab`` command line (Typer + rich). Exit codes: 0 ok, 1 some run failed, 2 bad input.

Every read command takes ``--json``; bad input is reported as one line on stderr, never a stack trace.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nflab.richtext import SafeTable, make_console, plain, styled

if TYPE_CHECKING:
    from nflab.leaderboard import Row
    from nflab.settings import Settings
    from nflab.store import Store

app = typer.Typer(
    pretty_exceptions_enable=False,
    add_completion=False,
    no_args_is_help=True,
    help="nflab: normalizing-flow campaigns at scale.",
)
db_app = typer.Typer(no_args_is_help=True, help="nflab's SQL store.")
config_app = typer.Typer(no_args_is_help=True, help="Settings (env vars override the embedded defaults).")
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")

# every string printed is literal (nflab.richtext): labels like ``realnvp [efd47265]`` are never read as markup
console = make_console(width=None if sys.stdout.isatty() else 160)
err_console = make_console(stderr=True)

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class BadInput(Exception):
    """A user error: printed as one line, exit code 2."""


def _bad_input_types() -> tuple[type[BaseException], ...]:
    from nflab.flows import ConfigError
    from nflab.flows.data import DatasetFileError, DatasetFormatError
    from nflab.pipelines import PipelineError
    from nflab.repro import ReproError
    from nflab.settings import SettingsError
    from nflab.store import StoreLookupError
    from nflab.workers.raynet import RayAddressError
    from nflab.workers.storage import StorageError

    return (
        BadInput,
        PipelineError,
        ConfigError,
        DatasetFileError,
        DatasetFormatError,
        RayAddressError,
        ReproError,
        SettingsError,
        StorageError,
        StoreLookupError,
    )


def _guard(fn: Callable[[], int | None]) -> None:
    try:
        code = fn() or EXIT_OK
    except _bad_input_types() as exc:
        err_console.print(styled(("error:", "red"), " ", _one_line(exc)), highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except KeyboardInterrupt:
        err_console.print("interrupted: re-run the same command to resume the campaign from its checkpoints")
        raise typer.Exit(130) from None
    except Exception as exc:
        if os.environ.get("NFLAB_DEBUG"):
            raise
        err_console.print(
            styled(
                ("internal error:", "red"),
                f" {type(exc).__name__}: {_one_line(exc)} (set NFLAB_DEBUG=1 for the traceback)",
            ),
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_RUN_FAILED) from None
    raise typer.Exit(code)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split("\n"))


def _settings() -> Settings:
    from nflab.settings import load_settings

    return load_settings()


def _store(settings: Settings, connected: threading.Event | None = None) -> Store:
    """The store, migrated; a database that cannot be reached is bad input (one line naming the setting).
    ``connected`` is set as soon as the database answered, before the migrations."""
    from sqlalchemy.exc import DBAPIError

    from nflab.settings import redact
    from nflab.store import Store

    settings.ensure_dirs()
    store = Store(settings.db_url)
    try:
        store.engine.connect().close()
        if connected is not None:
            connected.set()
        store.ensure_schema()
    except DBAPIError as exc:
        store.close()
        reason = _one_line(exc.orig) if exc.orig is not None else type(exc).__name__
        raise BadInput(f"NFLAB_DB_URL: cannot use {redact(settings.db_url)!r}: {redact(reason)[:300]}") from None
    return store


def _store_while_ray_starts(
    settings: Settings, address: str | None, *, warm: tuple[str, ...] = (), open_store: bool = True
) -> Store | None:
    """Start (or join) Ray while another thread migrates the store (``open_store``) and imports MLflow's SQL store
    module and the modules ``warm`` names: seconds of every campaign's and study's start-up spent while Ray starts
    instead of after it. The database is reached first: one that cannot be is bad input before Ray starts. Without
    ``open_store`` nothing is written (the caller opens the store once its checks passed) and None is returned."""
    connected, failed = threading.Event(), threading.Event()

    def work() -> Store | None:
        try:
            store = _store(settings, connected) if open_store else None
        except BaseException:
            failed.set()
            connected.set()
            raise
        connected.set()
        for module in ("mlflow.store.tracking.sqlalchemy_store", *warm):
            importlib.import_module(module)
        return store

    with ThreadPoolExecutor(max_workers=1) as pool:
        done = pool.submit(work)
        connected.wait()  # a database that cannot be reached is one line before Ray starts (not after)
        if failed.is_set():
            done.result()  # raises the thread's error
        from nflab.workers import ensure_ray

        ensure_ray(address or settings.ray_address)
        return done.result()


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


# ----------------------------------------------------------------------------------------------- run


@app.command()
def run(
    pipeline: Annotated[
        Path | None, typer.Argument(help="pipeline YAML (see pipelines/catalog/); omit with --campaign")
    ] = None,
    set_: Annotated[list[str], typer.Option("--set", help="override: dotted.path=value (repeatable)")] = [],  # noqa: B006
    address: Annotated[str | None, typer.Option(help="Ray address (default: RAY_ADDRESS or a local Ray)")] = None,
    fresh: Annotated[bool, typer.Option(help="start a new campaign instead of resuming the same pipeline's")] = False,
    campaign: Annotated[
        str | None, typer.Option(help="drive this stored campaign (its resolved runs; used by submit) or run into it")
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="print the expanded campaign (runs, varying options, status); write nothing"),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="confirm a campaign of more runs than NFLAB_MAX_RUNS")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print the outcome as JSON")] = False,
) -> None:
    """Run a pipeline's campaign to completion with a progress bar, then print a summary."""

    def body() -> int:
        from nflab.campaign import check_resources, check_storage, open_campaign, prepare, run_campaign
        from nflab.workers.raynet import check_address

        settings = _settings()
        if pipeline is None and campaign is None:
            raise BadInput("PIPELINE: missing; allowed: a pipeline file or catalog name, or --campaign ID")
        if dry_run:
            if pipeline is None:
                raise BadInput("--dry-run: plans a PIPELINE; a stored campaign is already planned (nflab status ID)")
            return _dry_run(pipeline, set_, settings, confirmed=yes, json_out=json_out)
        if pipeline is not None:
            prepared = prepare(pipeline, set_, settings, confirmed=yes)  # valid, fits the store: nothing written yet
        check_address(address or settings.ray_address)  # an unusable Ray address too (within seconds)
        check_storage(settings)  # and run storage that cannot be listed (NFLAB_STORAGE)

        store = _store_while_ray_starts(settings, address)
        assert store is not None
        from nflab.workers import node_capacities

        if pipeline is None:
            from nflab.campaign import stored_campaign

            prepared = stored_campaign(store, campaign)  # type: ignore[arg-type]
        check_resources(prepared, node_capacities())  # a run no node can host would wait forever
        campaign_id = campaign or open_campaign(store, prepared, settings, fresh=fresh)
        steps_of = {s["run_key"]: s["config"]["train"]["steps"] for s in prepared.specs}  # dict lookups per event
        total_steps = sum(steps_of.values())
        done_steps: dict[str, int] = {}
        done_total = [0]  # sum(done_steps.values()), kept up to date per event instead of re-summed

        def advance(run_key: str, step: int) -> int:
            done_total[0] += step - done_steps.get(run_key, 0)
            done_steps[run_key] = step
            return done_total[0]

        quiet = json_out or not sys.stderr.isatty()
        with progress_bar(disable=json_out) as progress:
            bar = progress.add_task(f"{prepared.name} steps", total=total_steps, info="")
            runs_bar = progress.add_task("runs", total=len(prepared.specs), info="")

            def on_progress(run_key: str, step: int, total: int, metrics: dict[str, Any]) -> None:
                loss = metrics.get("train_loss")
                info = f"{run_key} loss {loss:.3f}" if isinstance(loss, float) else run_key
                progress.update(bar, completed=advance(run_key, step), info=info)

            def on_result(run_key: str, result: dict[str, Any]) -> None:
                progress.update(bar, completed=advance(run_key, steps_of[run_key]))
                progress.advance(runs_bar)
                if result.get("status") != "finished" and not quiet:
                    progress.console.print(styled((f"run {run_key} failed:", "red"), f" {result.get('error')}"))

            outcome = run_campaign(
                prepared,
                settings,
                store=store,
                campaign_id=campaign_id,
                address=address,
                on_progress=on_progress,
                on_result=on_result,
            )
            for key in outcome.skipped:
                advance(key, steps_of[key])
                progress.advance(runs_bar)
            progress.update(bar, completed=done_total[0])
        runs = store.list_runs(campaign_id)
        if json_out:
            _print_json({"campaign_id": campaign_id, "runs": runs, "failed": outcome.failed})
        else:
            console.print(_runs_table(store, campaign_id, title=f"campaign {campaign_id[:8]} — {prepared.name}"))
        return EXIT_RUN_FAILED if outcome.failed else EXIT_OK

    _guard(body)


DRY_RUN_ROWS = 50  # runs listed in the table (--json lists every one)


def _dry_run(pipeline: Path, overrides: list[str], settings: Settings, *, confirmed: bool, json_out: bool) -> int:
    """``nflab run --dry-run``: the plan, written nowhere (see ``nflab.campaign.plan_campaign``)."""
    from nflab.campaign import plan_campaign, prepare
    from nflab.pipelines import CampaignTooLarge

    try:
        prepared = prepare(pipeline, overrides, settings, confirmed=confirmed)
    except CampaignTooLarge as exc:  # counted, not expanded
        summary = {"pipeline": exc.pipeline.name, "runs": exc.planned, "limit": exc.limit, "expanded": False}
        if json_out:
            _print_json(summary)
        else:
            console.print(
                f"{exc.pipeline.name}: {exc.planned:,} runs, more than NFLAB_MAX_RUNS={exc.limit:,}: not expanded "
                "(add --yes to expand and list them; nothing was written)",
                highlight=False,
            )
        return EXIT_OK
    plan = plan_campaign(prepared, settings)
    if json_out:
        _print_json({**plan, "expanded": True})
        return EXIT_OK
    resumes = f"; resumes campaign {plan['resumes'][:8]} ({plan['finished']} finished)" if plan["resumes"] else ""
    title = (
        f"{plan['pipeline']}: {plan['runs']:,} runs, {plan['configurations']:,} configurations, "
        f"{plan['steps']:,} steps, up to {plan['cpu']:g} CPU / {plan['gpu']:g} GPU per run{resumes} — dry run"
    )
    table = SafeTable(title=title)
    for col in ("run", "config", "seed", "varying options", "cpu", "gpu", "steps", "status"):
        table.add_column(col)
    for r in plan["plan"][:DRY_RUN_ROWS]:
        varying = ", ".join(f"{k}={json.dumps(v)}" for k, v in r["varying"].items())
        table.add_row(
            r["run_key"], r["config_hash"][:8], str(r["seed"]), varying, f"{r['cpu']:g}", f"{r['gpu']:g}",
            str(r["steps"]), r["status"],
        )  # fmt: skip
    console.print(table)
    if plan["runs"] > DRY_RUN_ROWS:
        console.print(f"… and {plan['runs'] - DRY_RUN_ROWS:,} more runs (--json lists every one)", highlight=False)
    console.print("nothing was written", highlight=False)
    return EXIT_OK


def progress_bar(*, disable: bool) -> Progress:
    """The rich progress display of long commands (``run``, ``tune``): description, bar, done/total, info, time."""
    return Progress(
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}", markup=False),
        TimeElapsedColumn(),
        console=err_console,
        disable=disable,
        transient=False,
    )


def _runs_table(store: Store, campaign_id: str, *, title: str) -> SafeTable:
    table = SafeTable(title=title)
    for col in ("run", "dataset", "family", "seed", "status", "best nats", "best bpd", "error"):
        table.add_column(col)
    for r in store.list_runs(campaign_id, with_results=True):
        best = {x["metric"]: x["value"] for x in r.get("results", []) if x["kind"] == "best" and x["split"] == "test"}
        style = {"finished": "green", "failed": "red"}.get(r["status"], "yellow")
        table.add_row(
            r["run_key"],
            r.get("dataset") or "",
            r.get("family") or "",
            str(r.get("seed", "")),
            plain(r["status"], style),
            _fmt(best.get("nats")),
            _fmt(best.get("bpd")),
            (r.get("error") or "")[:80],
        )
    return table


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.4f}"


# ------------------------------------------------------------------------------------ read commands


@app.command()
def leaderboard(
    dataset: Annotated[str | None, typer.Option(help="only this dataset")] = None,
    metric: Annotated[
        str | None, typer.Option(help="nats, bpd, mse or a certificate (default: bpd for images, nats for toy sets)")
    ] = None,
    select: Annotated[
        str, typer.Option(help="best (validation-selected), mean (last-N average) or final checkpoint")
    ] = "best",
    steps: Annotated[int | None, typer.Option(help="only rows trained for this many steps")] = None,
    preset: Annotated[
        str | None, typer.Option(help="only rows of this preset (default, small, published, ...)")
    ] = None,
    estimator: Annotated[
        str | None, typer.Option(help="only rows evaluated with this estimator (exact, rr-20, ...)")
    ] = None,
    group_by: Annotated[str | None, typer.Option("--group-by", help="budget: rank each (steps, preset) apart")] = None,
    versus: Annotated[str | None, typer.Option(help="pair every row against this family (or label)")] = None,
    html: Annotated[Path | None, typer.Option(help="also write a self-contained HTML page here")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    reference: Annotated[bool, typer.Option(help="include the published numbers as reference rows")] = True,
    study: Annotated[
        str | None, typer.Option(help="rank this tuning study's trials (left out of the leaderboard otherwise)")
    ] = None,
) -> None:
    """Mean ± std over seeds per configuration, ranked only against numbers of the same kind, with budgets,
    paired differences and the papers' numbers as reference rows."""

    def body() -> int:
        from nflab import leaderboard as lb
        from nflab.leaderboard import SELECTIONS

        if select not in SELECTIONS:
            raise BadInput(f"--select: {select!r} is not one of: {', '.join(SELECTIONS)}")
        if group_by not in (None, "budget"):
            raise BadInput(f"--group-by: {group_by!r} is not one of: budget")
        if html is not None and html.is_dir():
            raise BadInput(
                f"--html: {str(html)!r} is a folder; give a file path such as {str(html / 'leaderboard.html')!r}"
            )
        settings = _settings()
        store = _store(settings)
        if study is not None:
            studies = [row["name"] for row in store.list_study_rows()]
            if study not in studies:
                known = ", ".join(studies) or "none"
                raise BadInput(f"--study: {study!r} is not a study in the store; studies: {known}")
        if metric is not None:
            known = lb.known_metrics(store, dataset=dataset, include_reference=reference)
            if metric not in known:
                allowed = ", ".join(sorted(known)) or "none (no finished runs)"
                raise BadInput(f"--metric: {metric!r} is not one of the recorded metrics: {allowed}")
        rows = lb.leaderboard(
            store,
            dataset=dataset,
            metric=metric,
            kind=select,
            include_reference=reference,
            steps=steps,
            preset=preset,
            estimator=estimator,
            group_by=group_by,
            versus=versus,
            study=study,
        )
        if html is not None:
            lb.write_html(rows, html, images=_density_images(store, rows, Path(settings.storage)), group_by=group_by)
        if json_out:
            _print_json(lb.to_json(rows))
        else:
            console.print(lb.render(rows, group_by))
            if html is not None:
                console.print(f"wrote {html}")
        return EXIT_OK

    _guard(body)


def _density_images(store: Store, rows: list[Row], runs_root: Path) -> dict[str, str]:
    """config_hash → a density (toy) or samples (images) PNG of one of the row's runs (local run storage)."""
    images: dict[str, str] = {}
    for row in rows:
        if row.source != "ours" or not row.run_ids:
            continue
        run_row = store.get_run(row.run_ids[0])
        if run_row is None:
            continue
        folder = runs_root / run_row["campaign_id"] / run_row["run_key"]
        for name in ("density.png", "samples.png"):
            if (folder / name).exists():
                images[row.config_hash] = str(folder / name)
                break
    return images


bench_app = typer.Typer(help="Measurements to run on your own hardware.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("e5")
def bench_e5(
    families: Annotated[
        str | None, typer.Option("--families", help="comma-separated families (default: every family)")
    ] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="batch of 2-D toy points per step")] = 500,
    blocks: Annotated[
        int | None, typer.Option("--blocks", min=1, help="blocks of every Lipschitz family (default: its toy model)")
    ] = None,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="interleaved rounds of timed steps")] = 5,
    per_round: Annotated[int, typer.Option("--per-round", min=1, help="timed steps per contender per round")] = 2,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="untimed steps per contender first")] = 2,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="torch threads (default: torch's)")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="folder for e5.json and e5.png")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """E5, the running-time breakdown of a training step (i-ResNet's table: plain / + spectral normalisation /
    + log-det) for every family on 2-D toy data, on this machine; writes e5.json and a bar chart e5.png."""

    def body() -> int:
        import torch

        from nflab.flows.analysis.runtime import PUBLISHED_E5, runtime_breakdown
        from nflab.workers.plots import runtime_figure

        settings = _settings()
        names = [f for f in families.split(",") if f] if families else None
        known = set(flows_available())
        for name in names or []:
            if name not in known:
                raise BadInput(f"--families: {name!r} is not one of: {', '.join(sorted(known))}")
        if threads is not None:
            torch.set_num_threads(threads)
        rows = runtime_breakdown(names, batch=batch, blocks=blocks, warmup=warmup, rounds=rounds, per_round=per_round)
        folder = out or settings.home / "bench"
        folder.mkdir(parents=True, exist_ok=True)
        report = {
            "rows": rows,
            "batch": batch,
            "threads": torch.get_num_threads(),
            "timing": {"warmup": warmup, "rounds": rounds, "per_round": per_round},
            "published": PUBLISHED_E5,
        }
        (folder / "e5.json").write_text(json.dumps(report, indent=2, sort_keys=True))
        title = f"E5 on this machine: 2-D toy models, batch {batch}, {torch.get_num_threads()} torch threads"
        runtime_figure(rows, folder / "e5.png", title=title)
        if json_out:
            _print_json(report)
            return EXIT_OK
        table = SafeTable(title="E5: ms per training step (median wall; CPU of the process; wall ratio to plain)")
        for col in ("family", "params", "plain", "+Lipschitz", "+log-det"):
            table.add_column(col)
        for row in rows:
            cells = []
            for variant in ("plain", "+Lipschitz", "+log-det"):
                v = row["variants"].get(variant)
                ratio = f" (×{v['ratio_to_plain']:.2f})" if v and v.get("ratio_to_plain") else ""
                cells.append(f"{v['wall_ms']:.1f} [{v['cpu_ms']:.1f}]{ratio}" if v else "n/a")
            table.add_row(row["family"], f"{row['params']:,}", *cells)
        console.print(table)
        console.print(f"published: {PUBLISHED_E5}", highlight=False)
        console.print(f"wrote {folder / 'e5.json'} and {folder / 'e5.png'}", highlight=False)
        return EXIT_OK

    _guard(body)


def flows_available() -> list[str]:
    from nflab.flows import available

    return available()


@app.command()
def compare(
    campaign_id: Annotated[str, typer.Argument(help="campaign id (or prefix)")],
    out: Annotated[Path | None, typer.Option("--out", help="PNG to write (default: $NFLAB_HOME/figures/…)")] = None,
    figure: Annotated[str, typer.Option("--figure", help="the per-run PNG to tile: density.png or samples.png")] = (
        "density.png"
    ),
) -> None:
    """One PNG comparing a campaign's families side by side: each finished run's density (toy) or samples (images)
    figure in a grid of datasets (rows) × models (columns), the lowest seed of each configuration."""

    def body() -> int:
        from nflab.workers.plots import comparison_figure
        from nflab.workers.storage import Folder, join

        settings = _settings()
        store = _store(settings)
        campaign = store.get_campaign(campaign_id)
        chosen: dict[tuple[str, str], dict[str, Any]] = {}
        for r in store.list_runs(campaign["id"]):
            if r["status"] != "finished":
                continue
            key = (r.get("dataset") or "?", r.get("family") or "?")
            if key not in chosen or (r.get("seed") or 0) < (chosen[key].get("seed") or 0):
                chosen[key] = r
        if not chosen:
            raise BadInput(f"campaign {campaign['id']} has no finished run to compare")
        rows = list(dict.fromkeys(k[0] for k in chosen))
        cols = list(dict.fromkeys(k[1] for k in chosen))
        target = out or settings.home / "figures" / f"{campaign['id'][:8]}-{figure.removesuffix('.png')}-grid.png"
        scratch = target.parent / f".{target.stem}-tiles"
        tiles: dict[tuple[str, str], Path] = {}
        for key, r in chosen.items():
            local = scratch / f"{r['run_key']}.png"
            local.parent.mkdir(parents=True, exist_ok=True)
            if Folder.of(join(settings.storage, campaign["id"], r["run_key"])).get(figure, local):
                tiles[key] = local
        written = comparison_figure(tiles, rows, cols, target, title=f"{campaign.get('name', '')}: {figure}")
        for tile in tiles.values():
            tile.unlink(missing_ok=True)
        if scratch.is_dir() and not any(scratch.iterdir()):
            scratch.rmdir()
        console.print(f"wrote {written}", highlight=False)
        return EXIT_OK

    _guard(body)


@app.command()
def status(
    campaign_id: Annotated[str | None, typer.Argument(help="campaign id (or prefix); all campaigns if omitted")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Campaigns and their runs' states."""

    def body() -> int:
        from nflab.submit import refresh

        settings = _settings()
        store = _store(settings)
        if campaign_id is None:
            campaigns = [refresh(store, settings, c) for c in store.list_campaigns(limit=50)]
            if json_out:
                _print_json(campaigns)
                return EXIT_OK
            table = SafeTable(title="campaigns")
            for col in ("id", "name", "status", "runs", "created", "error"):
                table.add_column(col)
            for c in campaigns:
                counts = store.campaign_summary(c["id"])
                text = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
                error = (c.get("error") or "")[:80]
                table.add_row(c["id"][:8], c["name"], c["status"], text, str(c["created_at"])[:19], error)
            console.print(table)
            return EXIT_OK
        camp = refresh(store, settings, store.get_campaign(campaign_id))
        runs = store.list_runs(camp["id"])
        if json_out:
            _print_json({"campaign": camp, "runs": runs, "summary": store.campaign_summary(camp["id"])})
        else:
            console.print(_runs_table(store, camp["id"], title=f"campaign {camp['id'][:8]} — {camp['name']}"))
            console.print(f"status: {camp['status']}", highlight=False)
            if camp.get("error"):
                console.print(f"[red]error:[/red] {camp['error']}", highlight=False, soft_wrap=True)
        return EXIT_OK

    _guard(body)


@app.command()
def cancel(campaign_id: Annotated[str, typer.Argument(help="campaign id (or prefix)")]) -> None:
    """Cancel a campaign: its submitted job is stopped and unfinished runs are marked cancelled."""

    def body() -> int:
        from nflab.campaign import end_campaign
        from nflab.submit import ACTIVE, stop

        settings = _settings()
        store = _store(settings)
        camp = store.get_campaign(campaign_id)
        if camp["status"] not in ACTIVE:
            console.print(f"campaign {camp['id'][:8]} is {camp['status']}: nothing to cancel", highlight=False)
            return EXIT_OK
        stopped = stop(camp, settings)  # raises (exit 2, nothing changed) when its cluster cannot be reached
        n = end_campaign(store, settings, camp["id"], "cancelled", "cancelled by the user")
        console.print(f"cancelled campaign {camp['id'][:8]}: {stopped}; {n} runs cancelled", highlight=False)
        return EXIT_OK

    _guard(body)


@app.command()
def logs(
    run_id: Annotated[str, typer.Argument(help="run id (or prefix) or run key")],
    campaign_id: Annotated[
        str | None, typer.Option("--campaign", help="look the run up in this campaign (id or prefix)")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """A run's log, its error if it failed, and its recorded results."""

    def body() -> int:
        settings = _settings()
        store = _store(settings)
        scope = store.get_campaign(campaign_id)["id"] if campaign_id is not None else None
        run_row = store.get_run(run_id, scope)
        from nflab.workers.storage import Folder, join

        folder = Folder.of(join(settings.storage, run_row["campaign_id"], run_row["run_key"]))
        log_file = folder.uri_of("train.log")
        text = folder.read_text("train.log") or ""
        if json_out:
            _print_json({"run": run_row, "log": text})
            return EXIT_OK
        console.print(f"run {run_row['id']} ({run_row['run_key']}) status={run_row['status']}", highlight=False)
        if run_row.get("error"):
            console.print(styled(("error:", "red"), f" {run_row['error']}"), highlight=False)
        sys.stdout.write(text if text else f"(no log file at {log_file})\n")
        return EXIT_OK

    _guard(body)


@app.command()
def models(
    family: Annotated[str | None, typer.Argument(help="a family: its options (default per preset, range, doc)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the JSON Schema of the options")] = False,
) -> None:
    """The flow families, or one family's options: type and range, default for vectors and per preset, doc."""

    def body() -> int:
        import nflab.flows as F
        from nflab.flows.registry import defaults, json_schema
        from nflab.flows.registry import family as get_family

        if family is None:
            if json_out:
                _print_json({name: json_schema(name) for name in F.available()})
                return EXIT_OK
            table = SafeTable(title="flow families (nflab models FAMILY for the options)")
            for col in ("family", "summary", "presets", "options"):
                table.add_column(col)
            for name in F.available():
                fam = get_family(name)
                table.add_row(name, fam.summary, ", ".join(fam.presets), str(len(F.options(name)) - 1))
            console.print(table)
            return EXIT_OK
        fam = get_family(family)  # an unknown name is a ConfigError: one line, exit 2
        if json_out:
            _print_json(json_schema(family))
            return EXIT_OK
        presets = list(fam.presets)
        columns = {"vectors": defaults(family, "vectors")}
        columns.update({p: defaults(family, "images" if p in fam.by_data.values() else "vectors", p) for p in presets})
        by_data = ", ".join(f"{kind}: {p}" for kind, p in fam.by_data.items())
        table = SafeTable(title=f"{family}: {fam.summary}" + (f" (default preset for {by_data})" if by_data else ""))
        for col in ("option", "allowed", "default", *presets, "tunable", "description"):
            table.add_column(col)
        for key, spec in F.options(family).items():
            if key == "preset":
                continue
            shown = [_show(columns["vectors"].get(key, spec.default))]
            for p in presets:
                value = columns[p].get(key, spec.default)
                shown.append("" if _same_value(value, columns["vectors"].get(key, spec.default)) else _show(value))
            search = spec.search
            tunable = ""
            if search is not None:
                rng = (
                    f"[{search.low:g}, {search.high:g}]{' log' if search.log else ''}" if search.low is not None else ""
                )
                tunable = " ".join(x for x in (",".join(spec.spaces), rng) if x)
            table.add_row(key, spec.allowed, *shown, tunable, spec.doc)
        # a terminal wraps the table to its width; piped (a file, a test) it is printed whole, one option per line
        (console if sys.stdout.isatty() else make_console(width=1000)).print(table)
        console.print("a preset column shows only the values that differ from the default", highlight=False)
        return EXIT_OK

    _guard(body)


def _show(value: Any) -> str:
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def _same_value(a: Any, b: Any) -> bool:
    return _show(a) == _show(b)


@app.command()
def submit(
    pipeline: Annotated[Path, typer.Argument(help="pipeline YAML")],
    set_: Annotated[list[str], typer.Option("--set", help="override: dotted.path=value (repeatable)")] = [],  # noqa: B006
    address: Annotated[str | None, typer.Option(help="Ray dashboard address, e.g. http://head:8265")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="confirm a campaign of more runs than NFLAB_MAX_RUNS")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Submit a campaign and return its id at once (Ray Jobs API; a background process when local)."""

    def body() -> int:
        from nflab.campaign import end_campaign, open_campaign, prepare
        from nflab.submit import plan, start

        settings = _settings()
        prepared = prepare(pipeline, set_, settings, confirmed=yes)
        target = plan(address, settings)  # the cluster answers and takes the token, before anything is written
        store = _store(settings)
        campaign_id = open_campaign(store, prepared, settings, fresh=True)
        from nflab.workers.environment import code_version_label

        store.add_runs(campaign_id, prepared.specs, code_version=code_version_label())
        try:
            submission_id = start(target, campaign_id, settings)
        except Exception as exc:
            end_campaign(store, settings, campaign_id, "failed", f"submit failed: {_one_line(exc)}")
            raise
        store.set_submission(campaign_id, submission_id, target.jobs_address)
        if json_out:
            _print_json(
                {"campaign_id": campaign_id, "submission_id": submission_id, "jobs_address": target.jobs_address}
            )
        else:
            console.print(f"submitted campaign {campaign_id} (submission {submission_id})", highlight=False)
        return EXIT_OK

    _guard(body)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="target revision")] = "head") -> None:
    """Apply nflab's Alembic migrations (also done automatically on first use)."""

    def body() -> int:
        from nflab import migrate

        settings = _settings()
        settings.ensure_dirs()
        migrate.upgrade(settings.db_url, revision)
        console.print(f"database at revision {migrate.current(settings.db_url)}", highlight=False)
        return EXIT_OK

    _guard(body)


@config_app.command("show")
def config_show(json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """The effective settings (passwords redacted)."""

    def body() -> int:
        data = _settings().redacted()
        if json_out:
            _print_json(data)
            return EXIT_OK
        table = SafeTable(title="nflab settings")
        table.add_column("setting")
        table.add_column("value")
        for key, value in data.items():
            table.add_row(key, str(value))
        console.print(table)
        return EXIT_OK

    _guard(body)


from nflab import cli_repro, cli_serve, cli_tune  # noqa: E402,F401 - register `nflab repro`, `serve` and `tune`


def main() -> None:
    """The console entry point: Typer's app, with usage errors as one line (exit 2) instead of a framed box."""
    try:  # recent Typer vendors Click as typer._click; older releases use Click itself
        from typer._click.exceptions import UsageError
    except ImportError:  # pragma: no cover - depends on the installed Typer
        from click.exceptions import UsageError

    try:
        code = app(standalone_mode=False, prog_name="nflab")
    except UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help was printed when the error was made
            sys.exit(EXIT_OK)
        command = exc.ctx.command_path if exc.ctx is not None else "nflab"
        err_console.print(f"error: {exc.format_message()} (see `{command} --help`)", highlight=False, markup=False)
        sys.exit(EXIT_BAD_INPUT)
    except typer.Abort:
        err_console.print("interrupted", highlight=False)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else EXIT_OK)


if __name__ == "__main__":
    main()
