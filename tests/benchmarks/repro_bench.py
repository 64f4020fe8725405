"""Measure ``nflab repro`` on the catalog's ``e2-monotone-quick``: the reference campaign, a pin, two checks in a row
(verdict and seconds each), the daemon's CPU use while idle, and its due-to-start latency.

    nice python tests/benchmarks/repro_bench.py --home /tmp/nflab-repro-bench [--idle-s 120] [--steps 250]

Runs against its own ``NFLAB_HOME`` (embedded SQLite + MLflow, a local Ray); prints a Markdown summary. ``--steps``
runs the pipeline at a smaller training budget (``--set train.steps=N``) and pins that campaign by its id.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

PIPELINE = "pipelines/catalog/e2-monotone-quick.yaml"
NAME = "e2-monotone-quick"


def nflab(*args: str, env: dict[str, str]) -> tuple[int, str, float]:
    """Exit code, stdout (stderr appended when the command failed) and wall seconds of one ``nflab`` command."""
    exe = Path(sys.executable).with_name("nflab")
    start = time.monotonic()
    proc = subprocess.run([str(exe), *args], env=env, capture_output=True, text=True)
    text = proc.stdout if proc.returncode in (0, 1) else proc.stdout + proc.stderr
    return proc.returncode, text, time.monotonic() - start


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (from /proc, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", required=True)
    parser.add_argument("--idle-s", type=float, default=120.0)
    parser.add_argument("--steps", type=int, default=None, help="train.steps of every run (default: the pipeline's)")
    parser.add_argument("--reference", help="pin this finished campaign (id) instead of running the pipeline first")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NFLAB_", "MLFLOW_", "RAY_ADDRESS"))}
    env["NFLAB_HOME"] = args.home
    out: list[str] = [f"# repro bench ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.1f})"]

    overrides = [] if args.steps is None else ["--set", f"train.steps={args.steps}"]
    if args.reference is None:
        code, text, seconds = nflab("run", PIPELINE, *overrides, "--json", env=env)
        out.append(f"- reference campaign `nflab run {PIPELINE} {' '.join(overrides)}`: exit {code}, {seconds:.0f} s")
        if code != 0:
            print(text[-3000:])
        target = PIPELINE if args.steps is None else json.loads(text)["campaign_id"]
    else:
        target = args.reference
    code, text, seconds = nflab("repro", "add", target, "--cron", "@weekly", "--name", NAME, "--json", env=env)
    out.append(f"- `nflab repro add {target} --cron @weekly --name {NAME}`: exit {code}, {seconds:.1f} s")
    if code != 0:
        print(text[-3000:])
    for i in (1, 2):
        code, text, seconds = nflab("repro", "run", NAME, "--json", env=env)
        try:
            (row,) = json.loads(text)
            verdict = f"{row['status']} ({row['reason']}); check's own time {row['details'].get('seconds')} s"
        except (ValueError, KeyError):
            verdict = text[-500:]
        out.append(f"- check {i} `nflab repro run {NAME}`: exit {code}, {seconds:.0f} s wall: {verdict}")

    # the daemon while nothing is due (the weekly schedule), then its due-to-start latency on a minutely schedule
    daemon_env = dict(env)
    log = Path(args.home) / "daemon.log"
    with open(log, "w") as f:
        exe = Path(sys.executable).with_name("nflab")
        proc = subprocess.Popen([str(exe), "repro", "daemon"], env=daemon_env, stdout=f, stderr=f)
    time.sleep(20)  # start-up (imports, store) is not idle time
    before, t0 = cpu_seconds(proc.pid), time.monotonic()
    time.sleep(args.idle_s)
    used, elapsed = cpu_seconds(proc.pid) - before, time.monotonic() - t0
    out.append(
        f"- daemon idle: {used:.2f} CPU s over {elapsed:.0f} s = {100 * used / elapsed:.3f} % of a core "
        "(default --poll 60)"
    )
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from nflab.store import Store

    with Store(f"sqlite:///{Path(args.home) / 'nflab.db'}") as store:
        sid = store.add_schedule("latency", "-", cron="* * * * *", pin=None, anchor_at=datetime.now(UTC))
        deadline = time.monotonic() + 200
        rows: list[dict] = []
        while time.monotonic() < deadline and len(rows) < 2:
            time.sleep(1)
            rows = [r for r in store.list_repro_checks(sid) if r["due_at"] is not None]
        lat = [(r["created_at"] - r["due_at"]).total_seconds() for r in rows]
        store.update_schedule(sid, enabled=False)
    out.append(
        "- daemon due-to-start latency (check row created − due time, minutely schedule): "
        + ", ".join(f"{x:.2f} s" for x in lat)
    )
    proc.send_signal(signal.SIGTERM)
    out.append(f"- daemon stopped by SIGTERM: exit {proc.wait(timeout=60)}")
    print("\n".join(out))


if __name__ == "__main__":
    main()
