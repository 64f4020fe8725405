"""Orchestration suite: a campaign of 16 short runs through ``nflab run`` against the same loops called directly.

The comparison, exactly:

- **direct**: the 16 ``RunSpec``s of one pipeline (``load_pipeline`` + ``expand``) executed one after the other in
  THIS process through ``nflab.workers.run_specs_inline`` → ``execute_run``, with ``torch.set_num_threads(1)``, a
  temporary MLflow SQLite store and workdir (MLflow logging, checkpoints, evaluation, plots all included). The
  MLflow store is initialised before the clock starts. Total wall time ``T_direct``.
- **nflab**: ``nflab run PIPELINE --json`` as a subprocess with ``NFLAB_HOME`` a fresh temporary folder (fresh nflab
  SQLite store, MLflow SQLite store, a local Ray started by the command with the machine's CPUs; each run is a
  Ray task with ``num_cpus=1``, so on 2 cores two run concurrently). Total wall time ``T_nflab`` from process start
  to exit: CLI import, migrations, Ray start-up and shutdown included.
- The ideal for the platform is perfect 2-way parallelism of the direct loop: ``T_direct / 2``; the reported
  overhead is ``T_nflab / (T_direct / 2) − 1`` (goal: under 10 % for runs of 30 s, both cores busy).

Run length is calibrated, not fixed: two short direct runs (same evaluation/checkpoint cadence: 5 evaluations and
5 checkpoints per run) give the fixed and per-step cost of one run on one thread, and the number of steps is chosen
so that one run takes about ``--orch-run-seconds`` (``--quick``: 5 s).

While ``nflab run`` works, the machine's CPU use is sampled every 0.5 s from ``/proc/stat`` (busy = not idle and
not iowait), and the CPU time of every process below the command (the driver itself, Ray's workers running the
runs, Ray's own services) is tallied from ``/proc/<pid>/stat``, to say where time goes when it is not training.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from benchlib import Suite, SuiteResult, Table

DATASETS: tuple[str, ...] = ("8gaussians", "checkerboard", "moons", "circles")
SEEDS: tuple[int, ...] = (0, 1, 2, 3)
FAMILY = "maf"
BATCH = 256
TEST_SAMPLES = 2000
PLOT_SAMPLES = 5000
EVALS_PER_RUN = 5  # eval_every = checkpoint_every = steps / EVALS_PER_RUN
SAMPLE_S = 0.5
CALIBRATION_STEPS: tuple[int, int] = (100, 600)
# Settings of the calling shell that would point `nflab run` somewhere else than its fresh NFLAB_HOME.
FOREIGN_ENV = ("NFLAB_DB_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS", "NFLAB_OPTUNA_URL", "NFLAB_DATA")


# ------------------------------------------------------------------------------------------------------- pipeline
def pipeline_yaml(name: str, steps: int, *, matrix: bool = True) -> str:
    """The campaign: MAF (preset small) on 4 toy sets × 4 seeds, 5 evaluations and 5 checkpoints per run."""
    every = max(1, steps // EVALS_PER_RUN)
    lines = [
        f"name: {name}",
        f"dataset: {{name: {DATASETS[0]}, test_samples: {TEST_SAMPLES}}}",
        f"model: {{family: {FAMILY}, preset: small}}",
        f"train: {{steps: {steps}, batch_size: {BATCH}, lr: 1.0e-3, eval_every: {every}, "
        f"checkpoint_every: {every}, log_every: 50, seed: 0}}",
        f"eval: {{batch_size: {TEST_SAMPLES}, exact: true, samples: {PLOT_SAMPLES}}}",
        "resources: {cpu: 1, gpu: 0, retries: 1}",
    ]
    if matrix:
        seeds = ", ".join(map(str, SEEDS))
        lines += ["matrix:", f"  dataset.name: [{', '.join(DATASETS)}]", f"  train.seed: [{seeds}]"]
    return "\n".join(lines) + "\n"


def write_pipeline(folder: Path, name: str, steps: int, *, matrix: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(pipeline_yaml(name, steps, matrix=matrix), encoding="utf-8")
    return path


def load_specs(path: Path) -> list[dict[str, Any]]:
    """The RunSpecs of a pipeline file as plain dicts (what both modes execute)."""
    from nflab.pipelines import expand, load_pipeline

    return [spec.model_dump(mode="json") for spec in expand(load_pipeline(path))]


# --------------------------------------------------------------------------------------------------------- direct
@dataclass
class DirectOutcome:
    total_s: float
    walls: list[float]
    failed: list[str]
    cpu_s: float
    started: float = 0.0  # time.time() when the loop started
    ended: float = 0.0
    busy: list[float] = field(default_factory=list)  # machine CPU busy samples while the loop ran


def run_direct(
    specs: list[dict[str, Any]],
    folder: Path,
    *,
    store: Path | None = None,
    before_loop: Callable[[], None] | None = None,
) -> DirectOutcome:
    """Execute ``specs`` one after the other in this process (1 torch thread), timing only the loop."""
    from nflab.workers import prepare_tracking, run_specs_inline

    torch.set_num_threads(1)
    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{(store or folder / 'mlflow.db').resolve()}"
    experiment = "bench-direct"
    prepare_tracking(uri, experiment)  # store migrations happen here, before the clock
    results: dict[str, dict[str, Any]] = {}
    run_ids = {s["run_key"]: uuid.uuid4().hex for s in specs}
    if before_loop is not None:
        before_loop()
    sampler = CpuSampler(os.getpid())
    sampler.start()
    started, cpu0, t0 = time.time(), time.process_time(), time.perf_counter()
    run_specs_inline(
        specs,
        workdir=folder / "runs",
        tracking_uri=uri,
        experiment_name=experiment,
        run_ids=run_ids,
        on_result=lambda key, result: results.__setitem__(key, result),
    )
    total, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    sampler.stop()
    failed = [f"{k}: {r.get('error')}" for k, r in results.items() if r.get("status") != "finished"]
    walls = [float(r["wall_s"]) for r in results.values()]
    return DirectOutcome(total, walls, failed, cpu, started, started + total, sampler.busy)


def run_pair(specs: list[dict[str, Any]], folder: Path) -> DirectOutcome:
    """Half of the specs in each of two plain processes (no Ray), started together, sharing one MLflow store.

    The wall time is from the earlier loop start to the later loop end; each process passes a barrier after its
    imports and store set-up, so that neither loop starts alone.
    """
    folder.mkdir(parents=True, exist_ok=True)
    store = folder / "mlflow.db"
    from nflab.workers import prepare_tracking

    prepare_tracking(f"sqlite:///{store.resolve()}", "bench-direct")
    go = folder / "go"
    procs: list[subprocess.Popen[bytes]] = []
    for i in range(2):
        shard = folder / f"shard{i}.json"
        shard.write_text(json.dumps({"specs": specs[i::2], "store": str(store), "go": str(go)}), encoding="utf-8")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--shard", str(shard), str(folder / f"out{i}.json")]
        procs.append(subprocess.Popen(cmd, cwd=folder))
    deadline = time.monotonic() + 300
    while not all((folder / f"out{i}.json.ready").exists() for i in range(2)):
        if time.monotonic() > deadline or any(p.poll() not in (None, 0) for p in procs):
            raise RuntimeError("a shard process of the two-process baseline did not get ready")
        time.sleep(0.01)
    go.touch()
    codes = [p.wait() for p in procs]
    if any(codes):
        raise RuntimeError(f"shard processes exited {codes}")
    outs = [DirectOutcome(**json.loads((folder / f"out{i}.json").read_text())) for i in range(2)]
    started, ended = min(o.started for o in outs), max(o.ended for o in outs)
    return DirectOutcome(
        total_s=ended - started,
        walls=[w for o in outs for w in o.walls],
        failed=[f for o in outs for f in o.failed],
        cpu_s=sum(o.cpu_s for o in outs),
        started=started,
        ended=ended,
        busy=max((o.busy for o in outs), key=len),
    )


def _shard_main(shard: Path, out: Path) -> None:
    """Body of one process of :func:`run_pair`: wait at the barrier, run the shard, write a DirectOutcome."""
    job = json.loads(shard.read_text(encoding="utf-8"))
    go = Path(job["go"])

    def barrier() -> None:
        Path(f"{out}.ready").touch()
        while not go.exists():
            time.sleep(0.005)

    outcome = run_direct(job["specs"], out.parent / out.stem, store=Path(job["store"]), before_loop=barrier)
    out.write_text(json.dumps(asdict(outcome)), encoding="utf-8")


@dataclass
class Calibration:
    steps: int
    fixed_s: float
    per_step_ms: float


def calibrate(folder: Path, target_s: float) -> Calibration:
    """Steps for one run of about ``target_s`` s: fit wall = fixed + steps × per_step on two short direct runs."""
    warm = load_specs(write_pipeline(folder, "orch-warmup", 20, matrix=False))
    run_direct(warm, folder / "warmup")  # imports, first MLflow store, allocator warm-up
    times: list[float] = []
    for n in CALIBRATION_STEPS:
        specs = load_specs(write_pipeline(folder, f"orch-cal-{n}", n, matrix=False))
        times.append(run_direct(specs, folder / f"cal-{n}").walls[0])
    (n1, n2), (t1, t2) = CALIBRATION_STEPS, times
    per_step = max((t2 - t1) / (n2 - n1), 1e-5)
    fixed = max(t1 - per_step * n1, 0.0)
    steps = max(EVALS_PER_RUN * 10, round((target_s - fixed) / per_step / 50.0) * 50)
    return Calibration(steps, fixed, per_step * 1e3)


# ------------------------------------------------------------------------------------------------------ CPU usage
def _proc_stat_totals() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from the first line of /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user/nice
    return total - idle, total


def _process_table() -> dict[int, tuple[int, int]]:
    """pid → (ppid, utime + stime in clock ticks) for every readable process."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    return table


def _category(pid: int, root: int) -> str:
    if pid == root:
        return "nflab run (driver process)"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
    if cmd.startswith("ray::") or "default_worker.py" in cmd:
        return "Ray workers (run tasks, progress actor)"
    return "Ray services (gcs_server, raylet, agents, monitors)"


class CpuSampler(threading.Thread):
    """Samples machine CPU busy fraction and per-process CPU time of ``root``'s process tree every SAMPLE_S."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.busy: list[float] = []
        self.stamps: list[float] = []  # wall time (time.time()) at the end of each busy sample
        self.ticks: dict[int, int] = {}
        self.categories: dict[int, str] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        last = _proc_stat_totals()
        while not self._halt.wait(SAMPLE_S):
            now = _proc_stat_totals()
            if now[1] > last[1]:
                self.busy.append((now[0] - last[0]) / (now[1] - last[1]))
                self.stamps.append(time.time())
            last = now
            self._tally()

    def _tally(self) -> None:
        table = _process_table()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        stack = [self.root]
        while stack:
            pid = stack.pop()
            if pid not in table:
                continue
            self.ticks[pid] = table[pid][1]
            category = _category(pid, self.root)
            if category:  # a title read after the process ended keeps the last one seen
                self.categories[pid] = category
            stack.extend(children.get(pid, []))

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def busy_between(self, start: float, end: float) -> float:
        """Mean busy fraction of the samples that ended within ``[start, end]`` (wall time), NaN if none did."""
        inside = [b for b, t in zip(self.busy, self.stamps, strict=True) if start <= t <= end]
        return sum(inside) / len(inside) if inside else float("nan")

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds per category (up to the last sample of each process)."""
        hz = os.sysconf("SC_CLK_TCK")
        out: dict[str, float] = {}
        for pid, ticks in self.ticks.items():
            key = self.categories.get(pid, "Ray services (gcs_server, raylet, agents, monitors)")
            out[key] = out.get(key, 0.0) + ticks / hz
        return out


# -------------------------------------------------------------------------------------------------------- platform
@dataclass
class PlatformOutcome:
    total_s: float
    walls: list[float]
    failed: list[str]
    busy: list[float]
    cpu_by_category: dict[str, float]
    first_start_s: float | None = None  # from the command's start to the first run marked running
    tail_s: float | None = None  # from the last run's end to the command's exit
    mean_in_flight: float | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)


def _when(value: Any) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value)).timestamp()


def run_platform(pipeline: Path, home: Path) -> PlatformOutcome:
    """``nflab run pipeline --json`` with a fresh NFLAB_HOME, timed from spawn to exit, CPU sampled meanwhile."""
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    env["NFLAB_HOME"] = str(home)
    exe = Path(sys.executable).parent / "nflab"
    command = [str(exe) if exe.exists() else "nflab", "run", str(pipeline), "--json"]
    wall0, t0 = time.time(), time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=home)
    sampler = CpuSampler(proc.pid)
    sampler.start()
    stdout, stderr = proc.communicate()
    total = time.perf_counter() - t0
    wall_end = wall0 + total
    sampler.stop()
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"nflab run exited {proc.returncode}: {stderr.strip()[-2000:]}")
    runs = json.loads(stdout)["runs"]
    failed = [f"{r['run_key']}: {r.get('error')}" for r in runs if r.get("status") != "finished"]
    outcome = PlatformOutcome(
        total_s=total,
        walls=[float(r["wall_s"]) for r in runs if r.get("wall_s") is not None],
        failed=failed,
        busy=sampler.busy,
        cpu_by_category=sampler.cpu_seconds(),
        runs=runs,
    )
    spans = [(_when(r.get("started_at")), _when(r.get("finished_at"))) for r in runs]
    spans_ok = [(a, b) for a, b in spans if a is not None and b is not None]
    if spans_ok:
        first, last = min(a for a, _ in spans_ok), max(b for _, b in spans_ok)
        outcome.first_start_s = first - wall0
        outcome.tail_s = wall_end - last
        if last > first:
            outcome.mean_in_flight = sum(b - a for a, b in spans_ok) / (last - first)
    return outcome


# ----------------------------------------------------------------------------------------------------------- suite
def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def run_orchestration(args: argparse.Namespace) -> SuiteResult:
    """The orchestration suite as called by ``run.py``."""
    target = 5.0 if args.quick else float(args.orch_run_seconds)
    folder = Path(tempfile.mkdtemp(prefix="nflab-orch-bench-"))

    def log(text: str) -> None:
        if args.orch_verbose:
            print(f"[orchestration] {text}", file=sys.stderr, flush=True)

    try:
        cal = calibrate(folder / "calibration", target)
        log(f"calibration: {cal}")
        pipeline = write_pipeline(folder, "orch-bench", cal.steps)
        specs = load_specs(pipeline)
        direct = run_direct(specs, folder / "direct")
        log(f"direct: {direct.total_s:.1f} s")
        pair = run_pair(specs, folder / "pair") if args.orch_pair else None
        if pair is not None:
            log(f"two processes: {pair.total_s:.1f} s")
        home = folder / "nflab-home"
        home.mkdir()
        plat = run_platform(pipeline, home)
        log(f"nflab: {plat.total_s:.1f} s")
    finally:
        if args.orch_keep:
            print(f"[orchestration] kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return build_result(args, target, cal, len(specs), direct, pair, plat)


def _other_load(busy: list[float], total_s: float, own_cpu_s: float) -> str:
    """CPU seconds used by processes outside the measurement while it ran (machine busy minus our own CPU)."""
    cores = os.cpu_count() or 1
    other = _mean(busy) * cores * total_s - own_cpu_s
    return f"{max(other, 0.0):.1f} s ({max(other, 0.0) / (cores * total_s):.0%} of the machine)"


def build_result(
    args: argparse.Namespace,
    target: float,
    cal: Calibration,
    n_runs: int,
    direct: DirectOutcome,
    pair: DirectOutcome | None,
    plat: PlatformOutcome,
) -> SuiteResult:
    """Tables and notes from the measurements."""
    cores = os.cpu_count() or 1
    ideal = direct.total_s / 2
    overhead = plat.total_s / ideal - 1.0
    summary = Table("Campaign wall time (goal: overhead < 10 %, both cores busy)", ["quantity", "value"])
    summary.rows += [
        ["T_direct (16 runs, sequential, 1 thread, one process)", f"{direct.total_s:.1f} s"],
        ["ideal parallel time T_direct / 2", f"{ideal:.1f} s"],
        ["T_nflab (`nflab run`, 2 concurrent Ray tasks, start-up and shutdown included)", f"{plat.total_s:.1f} s"],
        ["**overhead = T_nflab / (T_direct / 2) − 1**", f"**{overhead:+.1%}**"],
        ["mean CPU busy, both cores, while `nflab run` ran", f"{_mean(plat.busy):.1%}"],
    ]
    if pair is not None:
        summary.rows += [
            ["T_pair (2 plain processes × 8 runs, no Ray, one shared MLflow store)", f"{pair.total_s:.1f} s"],
            ["machine's 2-way scaling loss = T_pair / (T_direct / 2) − 1", f"{pair.total_s / ideal - 1:+.1%}"],
            ["platform's own overhead = T_nflab / T_pair − 1", f"{plat.total_s / pair.total_s - 1:+.1%}"],
        ]
    runs = Table("Per run (RunResult.wall_s / the store's runs.wall_s)", ["mode", "runs", "mean s", "sd s", "sum s"])
    modes = [("direct", direct.walls), *([("two plain processes", pair.walls)] if pair else [])]
    for mode, walls in [*modes, ("nflab (Ray task)", plat.walls)]:
        runs.rows.append([mode, str(len(walls)), f"{_mean(walls):.2f}", f"{_sd(walls):.2f}", f"{sum(walls):.1f}"])
    parts = Table("Where the nflab wall time goes", ["part", "value"])
    if plat.first_start_s is not None:
        label = "start-up: command start → first run marked running (CLI, stores, Ray start)"
        parts.rows.append([label, f"{plat.first_start_s:.1f} s"])
    if plat.tail_s is not None:
        parts.rows.append(["shutdown: last run finished → command exit", f"{plat.tail_s:.1f} s"])
    if plat.mean_in_flight is not None:
        parts.rows.append(["mean runs in flight between first start and last finish", f"{plat.mean_in_flight:.2f}"])
    per_run_cost = _mean(plat.walls) / _mean(direct.walls) - 1.0 if direct.walls and plat.walls else float("nan")
    parts.rows.append(["per-run wall time, Ray task vs direct", f"{per_run_cost:+.1%}"])
    parts.rows.append(["CPU time of the direct loop (one process)", f"{direct.cpu_s:.1f} s"])
    if pair is not None:
        parts.rows.append(["CPU time of the two plain processes", f"{pair.cpu_s:.1f} s"])
    for category, seconds in sorted(plat.cpu_by_category.items()):
        parts.rows.append([f"CPU time under `nflab run`: {category}", f"{seconds:.1f} s"])
    parts.rows.append(["other processes' CPU during direct", _other_load(direct.busy, direct.total_s, direct.cpu_s)])
    if pair is not None:
        parts.rows.append(["other processes' CPU during pair", _other_load(pair.busy, pair.total_s, pair.cpu_s)])
    own = sum(plat.cpu_by_category.values())
    parts.rows.append(["other processes' CPU during `nflab run`", _other_load(plat.busy, plat.total_s, own)])
    settings = {
        "campaign": f"{n_runs} runs: {FAMILY} preset small × datasets {', '.join(DATASETS)} × seeds "
        f"{', '.join(map(str, SEEDS))}; batch {BATCH}, exact log-det, {EVALS_PER_RUN} evaluations on {TEST_SAMPLES} "
        f"held-out samples and {EVALS_PER_RUN} checkpoints per run, log_every 50, plots of {PLOT_SAMPLES} samples",
        "run length": f"target {target:g} s per run on one thread → {cal.steps} steps (calibrated: fixed "
        f"{cal.fixed_s:.2f} s + {cal.per_step_ms:.2f} ms/step)",
        "direct": "`run_specs_inline` → `execute_run` in one process, torch.set_num_threads(1), temporary MLflow "
        "SQLite store (initialised before timing) and workdir",
        "pair": "the same, the specs split in two halves over two processes started together (a barrier after "
        "imports), one shared MLflow SQLite store" + ("" if pair else " — skipped (`--no-orch-pair`)"),
        "nflab": "`nflab run PIPELINE --json` subprocess, fresh NFLAB_HOME (SQLite store, MLflow SQLite, local Ray "
        f"with {cores} CPUs), one Ray task per run with num_cpus=1",
        "CPU sampling": f"/proc/stat every {SAMPLE_S} s; per-process CPU from /proc/<pid>/stat of the command's tree",
    }
    notes = [
        "How the comparison is defined: the direct loop runs the 16 runs sequentially on one thread in one "
        "process; `nflab run` runs them as Ray tasks, two at a time on the two cores. Perfect orchestration would "
        "take exactly half the direct time, so the overhead is `T_nflab / (T_direct / 2) − 1`. It contains "
        "everything the platform adds (CLI import, nflab and MLflow store set-up, Ray start-up and shutdown, "
        "worker processes, progress reporting, the driver's store writes, the tail when the last runs do not "
        "pair up) and also what the machine itself loses when two runs share it (memory bandwidth, caches); "
        "the two-plain-processes row measures the latter alone, so `T_nflab / T_pair − 1` is the platform's part.",
        "The machine is shared: 'other processes' CPU' is the machine's busy time minus the measured processes' "
        "own CPU. When it is not near zero the wall times above are inflated by foreign load and should be re-run "
        "on an idle machine.",
    ]
    if args.quick:
        notes.append("`--quick`: ~5 s runs, a smoke test; the goal refers to runs of 30 s.")
    elif abs(target - 30.0) > 1e-9:
        notes.append(f"Runs of ~{target:g} s instead of the goal's 30 s (`--orch-run-seconds {target:g}`).")
    for label, outcome in (("direct", direct), ("pair", pair), ("nflab", plat)):
        if outcome is not None and outcome.failed:
            notes.append(f"**{len(outcome.failed)} {label} runs failed**: " + "; ".join(outcome.failed[:3]))
    return SuiteResult(settings=settings, tables=[summary, runs, parts], notes=notes)


def add_orchestration_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--orch-run-seconds", type=float, default=30.0, help="target wall time of one run (1 thread)")
    group.add_argument("--orch-keep", action="store_true", help="keep the temporary folder (stores, run folders)")
    group.add_argument("--orch-verbose", action="store_true", help="print progress of the suite to stderr")
    group.add_argument(
        "--orch-pair",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time two plain processes (no Ray) to separate the machine's scaling loss",
    )


SUITE = Suite(
    name="orchestration",
    title="Orchestration overhead: 16 short runs through `nflab run` vs direct calls",
    run=run_orchestration,
    add_arguments=add_orchestration_arguments,
    packages=("nflab", "ray", "mlflow"),
)


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--shard":
    _shard_main(Path(sys.argv[2]), Path(sys.argv[3]))
