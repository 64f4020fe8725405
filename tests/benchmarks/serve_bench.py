"""``nflab serve`` on a large store: the leaderboard page and its JSON under concurrent clients.

Fills a store with ``--campaigns`` × ``--runs`` finished runs × 10 results (``scale_bench.fill_store``: 10,000 runs and
100,000 result rows by default) on SQLite, or PostgreSQL with ``--pg`` (a throwaway local server from Debian's
binaries, tests/pg.py) or ``--pg-url``; starts ``nflab serve`` as a subprocess on 127.0.0.1 and a free port; then
per URL: the first (cold) request alone, then ``--requests`` requests from ``--clients`` concurrent clients
(threads, one keep-alive connection each): median and 90th percentile latency, requests/s. ``--writes-per-s R``
repeats the load while another thread records R new finished runs per second (a live campaign): every write moves
the store's change marker, so the leaderboard is recomputed in the background while the readers go on.

    python tests/benchmarks/serve_bench.py [--pg] [--clients 8] [--requests 200] [--writes-per-s 1] [--home DIR]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.scale_bench import fill_store
from tests.loopback import free_port as _free_port

URLS = ("/leaderboard", "/api/leaderboard", "/leaderboard?dataset=moons&family=maf&sort=mean&order=desc")


def _get(conn: http.client.HTTPConnection, url: str) -> float:
    start = time.perf_counter()
    conn.request("GET", url)
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise SystemExit(f"GET {url}: {response.status} {body[:300]!r}")
    return time.perf_counter() - start


def _load(port: int, url: str, clients: int, requests: int, seconds: float = 0.0) -> dict[str, Any]:
    """``requests`` in all from ``clients`` threads, or (``seconds`` > 0) as many as they make in that time."""
    per_client = max(1, requests // clients)
    latencies: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        if seconds > 0:
            deadline = time.perf_counter() + seconds
            mine = []
            while time.perf_counter() < deadline:
                mine.append(_get(conn, url))
        else:
            mine = [_get(conn, url) for _ in range(per_client)]
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "requests": len(latencies),
        "median_ms": round(1000 * statistics.median(latencies), 1),
        "p90_ms": round(1000 * latencies[int(0.9 * (len(latencies) - 1))], 1),
        "rps": round(len(latencies) / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=10)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--pg", action="store_true", help="a throwaway local PostgreSQL server (tests/pg.py)")
    parser.add_argument("--pg-url", default=None, help="an existing empty PostgreSQL database")
    parser.add_argument("--writes-per-s", type=float, default=0.0, help="also measure with a writer this busy")
    parser.add_argument("--home", type=Path, default=None, help="keep the SQLite store here (reused when present)")
    args = parser.parse_args()
    with ExitStack() as stack:
        home = args.home or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nfserve-")))
        home.mkdir(parents=True, exist_ok=True)
        url = args.pg_url or f"sqlite:///{home / 'nflab.db'}"
        if args.pg:
            from tests.pg import postgres_server

            url = stack.enter_context(postgres_server()).create_database()
        start = time.perf_counter()
        if not (url.startswith("sqlite") and (home / "nflab.db").exists()):
            fill_store(url, args.campaigns, args.runs)
        out: dict[str, Any] = {
            "store": url.split(":", 1)[0],
            "runs": args.campaigns * args.runs,
            "fill_s": round(time.perf_counter() - start, 1),
            "clients": args.clients,
        }
        port = _free_port()
        env = {**os.environ, "NFLAB_HOME": str(home), "NFLAB_DB_URL": url}
        for var in ("NFLAB_STORAGE", "NFLAB_SERVE_TOKEN", "NFLAB_OPTUNA_URL", "MLFLOW_TRACKING_URI"):
            env.pop(var, None)
        nflab = str(Path(sys.executable).with_name("nflab"))
        proc = subprocess.Popen([nflab, "serve", "--port", str(port)], env=env, stderr=subprocess.PIPE)
        stack.callback(proc.wait, 30)
        stack.callback(proc.terminate)
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"nflab serve did not start: {proc.stderr.read().decode()[-2000:]}") from None
                time.sleep(0.2)
        for path in URLS:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            cold = _get(conn, path)
            conn.close()
            out[path] = {"cold_ms": round(1000 * cold, 1), **_load(port, path, args.clients, args.requests)}
            print(json.dumps({path: out[path]}), flush=True)
        if args.writes_per_s > 0:
            stop, ready = threading.Event(), threading.Event()
            writer = threading.Thread(target=_writer, args=(url, args.writes_per_s, stop, ready, out), daemon=True)
            writer.start()
            ready.wait(120)
            for path in URLS[:2]:
                key = f"{path} while writing"
                out[key] = _load(port, path, args.clients, 0, seconds=20.0)
                print(json.dumps({key: out[key]}), flush=True)
            stop.set()
            writer.join()
    print(json.dumps(out), flush=True)


def _writer(url: str, rate: float, stop: threading.Event, ready: threading.Event, out: dict[str, Any]) -> None:
    """A live campaign: one new finished run with a result every 1/rate seconds."""
    from nflab.store import Store

    with Store(url) as store:
        cid = store.create_campaign("live", "fp-live", "name: live", status="running")
        n = 0
        while not stop.is_set():
            spec = {"run_key": f"live-{n:05d}", "config_hash": f"{n % 7:064x}", "seed": n, "repeat": 0,
                    "config": {"dataset": {"name": "moons"}, "model": {"family": "maf"}}}  # fmt: skip
            rid = store.add_runs(cid, [spec])[spec["run_key"]]
            result = {"split": "test", "metric": "nats", "value": 1.0 + n / 1000, "budget": "exact", "kind": "best"}
            store.record_result(rid, {"status": "finished", "results": [result]})
            n += 1
            ready.set()
            stop.wait(1.0 / rate)
        out["writes"] = n


if __name__ == "__main__":
    main()
