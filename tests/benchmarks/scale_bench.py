"""Scale of the control plane: campaigns of thousands of runs, and status/leaderboard on a large store.

``campaign``: ``nflab run`` (the real CLI command, in this process: pipeline expansion, the SQLite store, MLflow
experiment, a local Ray, one Ray task per run, the mailbox, the progress display's callbacks, one store write per
start and per result) on a pipeline of N runs whose *task body* is a stub: it reports start and two progress events
and returns a canned RunResult of 10 result rows after ``--stub-ms`` milliseconds. Training is left out on purpose:
what is measured is the driver's cost per run, which must stay flat as N grows. Each N runs in a fresh process
(``--one N``), so peak RSS (``ru_maxrss``) is that N's alone.

``store``: a SQLite (or ``--pg-url`` PostgreSQL) store filled through the Store API with 10 campaigns × 1,000 runs
× 10 results (10,000 runs, 100,000 result rows), then the wall time of ``nflab status``, ``nflab status --json
<campaign>`` and ``nflab leaderboard --json`` as subprocesses (best of 3), at migration 0004 (before the cluster
indexes) and at head.

    python tests/benchmarks/scale_bench.py campaign --sizes 250 500 1000 2000
    python tests/benchmarks/scale_bench.py store
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NFLAB = str(Path(sys.executable).with_name("nflab"))
ROWS_PER_RUN = 10


def _canned(spec: dict) -> dict[str, Any]:
    rows = [
        {"split": split, "metric": metric, "value": 1.0 + i * 0.01, "budget": "exact", "step": 1, "kind": kind,
         "selection": "val-best" if kind == "best" else kind, "quantity": "exact", "n_samples": 100}
        for i, (split, metric, kind) in enumerate(
            [(s, m, k) for s in ("test", "validation") for m in ("nats", "bpd") for k in ("best", "final")]
            + [("test", "nats", "mean"), ("test", "bpd", "mean")]
        )
    ][:ROWS_PER_RUN]  # fmt: skip
    return {"status": "finished", "error": None, "steps": 1, "resumed_from": None, "mlflow_run_id": None,
            "results": rows, "checkpoints": [], "certificates": {}, "certificates_step": None, "n_params": 10,
            "preset": "small", "data_digest": None, "artifacts": [], "wall_s": 0.0}  # fmt: skip


def _stub_task(spec, workdir, tracking_uri, experiment_name, run_id, data_root, mailbox):
    import time as _time

    mailbox.report.remote("start", spec["run_key"], 0, 2, {})
    mailbox.report.remote("progress", spec["run_key"], 1, 2, {"train_loss": 1.0})
    _time.sleep(float(os.environ.get("NFLAB_BENCH_STUB_MS", "0")) / 1000)
    mailbox.report.remote("progress", spec["run_key"], 2, 2, {"train_loss": 0.5})
    return _canned(spec)


def one_campaign(n: int, stub_ms: float) -> dict[str, Any]:
    """Run an N-run campaign through the CLI command in this process; wall time and peak RSS."""
    import ray
    from typer.testing import CliRunner

    import nflab.workers.ray_exec as ray_exec
    from nflab.cli import app

    os.environ["NFLAB_BENCH_STUB_MS"] = str(stub_ms)
    ray_exec._remote_run = ray.remote(_stub_task)  # the stub travels by value (this module is __main__)
    home = Path(tempfile.mkdtemp(prefix="nfscale-"))
    os.environ["NFLAB_HOME"] = str(home)
    for var in ("NFLAB_DB_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS", "NFLAB_STORAGE"):
        os.environ.pop(var, None)
    pipeline = home / "scale.yaml"
    seeds = ", ".join(str(i) for i in range(n))
    pipeline.write_text(
        "name: scale\ndataset: {name: 8gaussians}\nmodel: {family: realnvp, preset: small}\n"
        "train: {steps: 2, batch_size: 8}\nresources: {cpu: 0.25, gpu: 0, retries: 0}\n"
        f"matrix:\n  train.seed: [{seeds}]\n"
    )
    start = time.perf_counter()
    result = CliRunner().invoke(app, ["run", str(pipeline)], catch_exceptions=False)
    wall = time.perf_counter() - start
    ok = result.exit_code == 0
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ray.shutdown()
    return {"runs": n, "ok": ok, "wall_s": round(wall, 2), "per_run_ms": round(1000 * wall / n, 2),
            "peak_rss_mib": round(rss_mib, 1), "exit": result.exit_code}  # fmt: skip


def campaign(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for n in args.sizes:
        done = subprocess.run(
            [sys.executable, __file__, "campaign", "--one", str(n), "--stub-ms", str(args.stub_ms)],
            capture_output=True,
            text=True,
            check=False,
        )
        line = next((li for li in reversed(done.stdout.splitlines()) if li.startswith("{")), None)
        if line is None:
            raise SystemExit(f"campaign of {n} failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(line))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def fill_store(url: str, campaigns: int, runs: int) -> None:
    """``campaigns`` × ``runs`` finished runs with ``ROWS_PER_RUN`` results each, through the Store API."""
    from nflab.store import Store

    with Store(url) as store:
        for c in range(campaigns):
            cid = store.create_campaign(f"big-{c}", f"fp-{c}", "name: big")
            specs = [
                {"run_key": f"r{i:05d}", "config_hash": f"{(c * 7 + i % 40):064x}", "seed": i, "repeat": 0,
                 "config": {"dataset": {"name": ("moons", "rings")[i % 2]},
                            "model": {"family": ("realnvp", "maf", "nice", "glow")[i % 4]}}}
                for i in range(runs)
            ]  # fmt: skip
            ids = store.add_runs(cid, specs)
            for key, rid in ids.items():
                store.record_result(rid, _canned({"run_key": key}))
            store.set_campaign_status(cid, "finished")


def _time_cli(env: dict[str, str], *args: str, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run([NFLAB, *args], env=env, capture_output=True, text=True, check=False)
        best = min(best, time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"nflab {' '.join(args)} failed: {done.stderr[-2000:]}")
    return round(best, 3)


def store(args: argparse.Namespace) -> dict[str, Any]:
    from nflab import migrate
    from nflab.store import Store

    home = Path(tempfile.mkdtemp(prefix="nfstore-"))
    url = args.pg_url or f"sqlite:///{home / 'nflab.db'}"
    start = time.perf_counter()
    fill_store(url, args.campaigns, args.runs)
    fill_s = time.perf_counter() - start
    with Store(url) as s:
        one = s.list_campaigns(1)[0]["id"]
    env = {**os.environ, "NFLAB_HOME": str(home), "NFLAB_DB_URL": url}
    env.pop("NFLAB_STORAGE", None)
    n_runs = args.campaigns * args.runs
    out: dict[str, Any] = {
        "store": url.split(":", 1)[0],
        "runs": n_runs,
        "results": n_runs * ROWS_PER_RUN,
        "fill_s": round(fill_s, 1),
    }
    out["cli_import_s"] = _time_cli(env, "--help")
    for label, revision in (("0004", "0004"), ("head", "head")):
        if revision == "0004":
            migrate.downgrade(url, "0004")
        else:
            migrate.upgrade(url, "head")
        out[label] = {
            "status": _time_cli(env, "status"),
            "status_campaign_json": _time_cli(env, "status", one, "--json"),
            "leaderboard_json": _time_cli(env, "leaderboard", "--json"),
        }
        print(json.dumps({label: out[label]}), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    c = sub.add_parser("campaign")
    c.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000, 2000])
    c.add_argument("--stub-ms", type=float, default=0.0)
    c.add_argument("--one", type=int, help=argparse.SUPPRESS)
    s = sub.add_parser("store")
    s.add_argument("--campaigns", type=int, default=10)
    s.add_argument("--runs", type=int, default=1000)
    s.add_argument("--pg-url", default=None)
    args = parser.parse_args()
    if args.what == "campaign" and args.one:
        print(json.dumps(one_campaign(args.one, args.stub_ms)), flush=True)
    elif args.what == "campaign":
        campaign(args)
    else:
        print(json.dumps(store(args)), flush=True)


if __name__ == "__main__":
    main()
