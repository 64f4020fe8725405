"""Tuning measures: trial throughput and overhead of ``nflab tune`` against a plain campaign, and search quality of
TPE with pruning against random search without pruning.

- **overhead**: the same ``n`` configurations (a grid over ``train.lr``, ``n`` values of 1e-3 × 1.2^i, all of which
  train without diverging, MAF on 8gaussians, ``--grid-steps`` steps on one thread) once as a study (``nflab
  tune``, grid sampler, no pruner, ``parallel: 2``) and once as a campaign (``nflab run`` with the values as a
  matrix; Ray runs two at a time on 2 cores). Each is a subprocess with a fresh ``NFLAB_HOME``, timed from spawn to
  exit; the machine's busy fraction (``/proc/stat``) is sampled meanwhile, and reported over the whole command and
  over its trial phase (from the first run's start to the last run's end in nflab's store: what ``parallel: 2``
  keeps busy, without the fixed start-up and the end). Overhead = ``T_tune / T_campaign − 1`` (goal < 5 %);
  throughput = trials per minute. ``--repeats R`` runs R pairs, alternating which command goes first, and reports
  the medians, with each command's fixed seconds (the whole command less its trial phase) apart from the phase.
- **search quality**: ``pipelines/catalog/tune-monotone-toy.yaml`` with ``--trials N`` as shipped (TPE seeded,
  8 start-up trials on a Sobol sequence, successive halving from a first rung of 125 steps, η 4) and with
  ``tune.sampler.kind=random``, ``tune.pruner.kind=none``: the best validation nats reached and the training steps
  spent in all trials together (goal: the same nats for ≤ 50 % of the steps). For the random baseline, whose trials
  all run to the end, Spearman's rho between each step's validation nats and the final ones says from which step the
  ranking a pruner acts on holds. ``--seeds`` repeats each TPE variant per sampler seed (one study is one draw).
- **replay**: ``--replay JOURNAL`` takes a kept random study without pruning of many trials (a pool of full learning
  curves) and replays random searches of ``--trials`` trials drawn from it through each pruner setting of
  ``REPLAYED`` (nflab's own pruners for the catalog study), ``--orders`` times: the expected best nats and steps of
  random search with and without each pruner, in seconds instead of hours. The pool of the RESULTS.md figures (40
  trials of the catalog study, random, seed 0) and the TPE studies measured against it are kept in
  ``tests/benchmarks/data/tune/``.
- **surrogate**: ``--surrogate JOURNAL…`` answers what the replay cannot: a sampler that learns (TPE) together with
  a pruner. The kept studies' full curves become a landscape (a configuration's curve is the mean of its ``--k``
  nearest measured curves, weighted by inverse squared distance in the unit cube of the space), and real Optuna
  studies, sampler and pruner built by nflab for each setting of ``SURROGATE``, run on it over ``--orders`` sampler
  seeds with the catalog's ``parallel``: expected best nats and steps, with standard errors, in a minute. With
  ``k = 1`` a configuration gets its nearest measured trial's curve, so random search sees the pool as the replay
  does (the check of the surrogate); real studies then confirm the chosen setting.

    python tests/benchmarks/tune_bench.py [--only overhead|search] [--trials 12] [--steps 600] [--startup 4]
        [--pruners hyperband successive_halving] [--warmup 300] [--seeds 0 1 2] [--no-baseline] [--keep DIR]
        [--n-configs 4] [--grid-steps 1500] [--repeats 3]
    python tests/benchmarks/tune_bench.py --replay tests/benchmarks/data/tune/random-40-trials.journal --trials 16
        [--orders 300]
    python tests/benchmarks/tune_bench.py --surrogate tests/benchmarks/data/tune/*.journal --trials 16 --orders 80
        [--k 1 3 5]
    python tests/benchmarks/tune_bench.py --judge tests/benchmarks/data/tune/tpe8sobol-halving-125-eta4-seed*.journal
        --random tests/benchmarks/data/tune/random-40-trials*.journal --trials 16 --steps 1000

- **judge**: ``--judge JOURNAL…`` is the verdict from kept studies: random search's expected best of ``--trials``
  trials, exact over the pooled curves of ``--random`` (random studies without pruning), with a bootstrap error, and
  each kept study's best nats and steps (share of ``--trials`` × ``--steps``), their means and the difference.

TPE draws its first ``startup_trials`` (Optuna's default: 10) at random with the same seeded generator as the random
sampler, so a study shorter than that compares Hyperband alone; ``--startup`` lets the model propose earlier.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestration_bench import FOREIGN_ENV, CpuSampler

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "pipelines" / "catalog" / "tune-monotone-toy.yaml"
DATA = ROOT / "tests" / "benchmarks" / "data" / "tune"

GRID = """\
name: {name}
dataset: {{name: 8gaussians, test_samples: 2000, validation_samples: 2000}}
model: {{family: maf}}
train: {{steps: {steps}, batch_size: 256, eval_every: {every}, checkpoint_every: {every}, log_every: {every}}}
eval: {{batch_size: 2000, samples: 2000, average_last: 0}}
resources: {{cpu: 1, gpu: 0, retries: 0}}
"""


#: pruner settings replayed by ``--replay`` (``--set`` overrides of the catalog study)
REPLAYED = {
    f"{kind}, first rung {rung}" + (f", η {eta}" if eta else ""): [
        f"tune.pruner={{kind: {kind}, warmup_steps: {rung}" + (f", reduction_factor: {eta}}}" if eta else "}")
    ]
    for kind, etas in (("hyperband", (2, 3, 4)), ("successive_halving", (2, 3, 4)), ("median", (None,)))
    for eta in etas
    for rung in (100, 200, 300)
}  # fmt: skip

#: the baseline: random search without pruning (the catalog's sampler and pruner sections replaced whole, so that none
#: of their options carries over)
RANDOM_SEARCH = ["tune.sampler={kind: random, seed: 0}", "tune.pruner={kind: none}"]

#: sampler and pruner settings simulated by ``--surrogate`` (``--set`` overrides of the catalog study)
SURROGATE = {
    f"TPE {startup} {how} start-up + successive halving {rung}, η {eta}": [
        f"tune.sampler.startup_trials={startup}",
        f"tune.sampler.startup={how}",
        f"tune.pruner={{kind: successive_halving, warmup_steps: {rung}, reduction_factor: {eta}}}",
    ]
    for startup, rung, eta in ((4, 200, 3), (4, 200, 4), (4, 100, 3), (8, 200, 3), (8, 200, 4), (8, 150, 4),
                               (8, 125, 4), (8, 100, 3))
    for how in ("random", "sobol")
}  # fmt: skip


def _nflab(args: list[str], home: Path) -> tuple[dict[str, Any], float, CpuSampler]:
    """``nflab ARGS --json`` with a fresh ``home``: its JSON, wall seconds, and the machine's busy samples."""
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV} | {"NFLAB_HOME": str(home)}
    exe = Path(sys.executable).parent / "nflab"
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(exe), *args, "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=home)  # fmt: skip
    sampler = CpuSampler(proc.pid)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    sampler.stop()
    if proc.returncode not in (0, 1) or not out.strip():
        raise RuntimeError(f"nflab {args[0]} exited {proc.returncode} (stdout {len(out)} chars): {err.strip()[-1500:]}")
    return json.loads(out), wall, sampler


def _busy(sampler: CpuSampler, home: Path) -> tuple[float, float, float]:
    """Mean busy fraction over the whole command and over its trial phase (first run started to last run ended), and
    the trial phase's seconds."""
    with contextlib.closing(sqlite3.connect(home / "nflab.db")) as db:
        first, last = db.execute("select min(started_at), max(finished_at) from nflab_runs").fetchone()
    stamp = [datetime.fromisoformat(t).replace(tzinfo=UTC).timestamp() for t in (first, last)]
    whole = statistics.fmean(sampler.busy) if sampler.busy else float("nan")
    return whole, sampler.busy_between(*stamp), stamp[1] - stamp[0]


def overhead(folder: Path, n: int, steps: int, *, campaign_first: bool = False) -> dict[str, Any]:
    lrs = [round(1e-3 * (1.2**i), 6) for i in range(n)]
    every = max(1, steps // 5)
    tune_yaml = folder / "grid-tune.yaml"
    tune_yaml.write_text(
        GRID.format(name="grid-tune", steps=steps, every=every)
        + f"tune:\n  space: {{train.lr: {{choices: {lrs}}}}}\n  sampler: {{kind: grid, seed: 0}}\n"
        f"  pruner: {{kind: none}}\n  trials: {n}\n  parallel: 2\n"
    )
    run_yaml = folder / "grid-run.yaml"
    run_yaml.write_text(GRID.format(name="grid-run", steps=steps, every=every) + f"matrix:\n  train.lr: {lrs}\n")
    (folder / "t").mkdir()
    (folder / "c").mkdir()
    if campaign_first:
        ran, t_run, cpu_run = _nflab(["run", str(run_yaml)], folder / "c")
    shown, t_tune, cpu_tune = _nflab(["tune", str(tune_yaml)], folder / "t")
    if not campaign_first:
        ran, t_run, cpu_run = _nflab(["run", str(run_yaml)], folder / "c")
    (busy_tune, trials_tune, phase_tune), (busy_run, trials_run, phase_run) = (
        _busy(cpu_tune, folder / "t"), _busy(cpu_run, folder / "c")
    )  # fmt: skip
    states = [t["state"] for t in shown["trials"]]
    return {
        "configs": n,
        "steps": steps,
        "tune_s": t_tune,
        "campaign_s": t_run,
        "overhead": t_tune / t_run - 1,
        "trials_per_min": 60 * n / t_tune,
        "busy_tune": busy_tune,
        "busy_campaign": busy_run,
        "busy_tune_trial_phase": trials_tune,
        "busy_campaign_run_phase": trials_run,
        "trial_phase_s": phase_tune,
        "campaign_run_phase_s": phase_run,
        "fixed_s_tune": t_tune - phase_tune,  # before the first trial and after the last
        "fixed_s_campaign": t_run - phase_run,
        "tune_states": states,
        "tune_fail_reasons": sorted({str(t["reason"])[:160] for t in shown["trials"] if t["state"] == "fail"}),
        "campaign_finished": sum(r.get("status") == "finished" for r in ran["runs"]),
    }


def search(
    folder: Path, trials: int, steps: int, startup: int | None, pruners: list[str], warmup: int | None,
    *, baseline: bool = True, keep: Path | None = None, seeds: Sequence[int] = (0,), sets: Sequence[str] = (),
) -> dict[str, Any]:  # fmt: skip
    out = {}
    common = ["--trials", str(trials), "--set", f"train.steps={steps}", "--set", f"train.eval_every={steps // 10}"]
    tpe = [] if startup is None else ["--set", f"tune.sampler.startup_trials={startup}"]
    if warmup is not None:
        tpe += ["--set", f"tune.pruner.warmup_steps={warmup}"]
    tpe += [arg for s in sets for arg in ("--set", s)]
    variants = {
        f"tpe+{p}" + (f", seed {seed}" if len(seeds) > 1 else ""): [
            *tpe, "--set", f"tune.pruner.kind={p}", "--set", f"tune.sampler.seed={seed}"
        ]
        for p in pruners
        for seed in seeds
    }  # fmt: skip
    if baseline:
        variants["random, no pruning"] = [arg for text in RANDOM_SEARCH for arg in ("--set", text)]
    for label, extra in variants.items():
        home = folder / label.replace(", no pruning", "").replace(", seed ", "-s").replace("+", "-")
        home.mkdir()
        shown, wall, _ = _nflab(["tune", str(CATALOG), *common, *extra], home)
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(home / "optuna.journal", keep / f"{home.name}.journal")
        done = [t for t in shown["trials"] if t["state"] == "complete" and t["values"]]
        best = min((t["values"][0] for t in done if t.get("feasible", True)), default=float("nan"))
        out[label] = {
            "best_nats": best,
            "steps_spent": sum(int(t.get("steps") or 0) for t in shown["trials"]),
            "states": {s: sum(t["state"] == s for t in shown["trials"]) for s in {t["state"] for t in shown["trials"]}},
            "wall_s": wall,
        }
        if "random" in label:
            out[label]["rank_agreement"] = rank_agreement(home / "optuna.journal", shown["name"])
    return out


def rank_agreement(journal: Path, name: str) -> dict[int, float]:
    """Spearman's rho between the trials' validation nats at each evaluated step and at their last step (trials
    that ran to the end): how early the ranking a pruner acts on holds."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from scipy.stats import spearmanr

    study = optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(journal))))
    curves = [t.intermediate_values for t in study.trials if t.state.name == "COMPLETE" and t.intermediate_values]
    last = max(max(c) for c in curves)
    full = [c for c in curves if last in c]
    steps = sorted(set.intersection(*(set(c) for c in full)))
    return {k: round(float(spearmanr([c[k] for c in full], [c[last] for c in full])[0]), 3) for k in steps}


@dataclass(frozen=True)
class Curve:
    """One trial of a kept study that ran to the end: its parameters, validation nats per evaluated step, final
    value and feasibility (its constraints)."""

    params: dict[str, Any]
    points: list[tuple[int, float]]
    value: float
    feasible: bool


def kept_studies(journals: Sequence[Path]) -> Iterator[list[Any]]:
    """The trials of every study in the kept journal files, one list per study."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    for journal in journals:
        storage = JournalStorage(JournalFileBackend(str(journal)))
        for name in optuna.get_all_study_names(storage):
            yield optuna.load_study(study_name=name, storage=storage).trials


def full_curves(journals: Sequence[Path]) -> list[Curve]:
    """The complete trials of the kept studies that reached the last step, once per distinct configuration."""
    from nflab.tune import feasible

    pool: dict[tuple, Curve] = {}
    for trials in kept_studies(journals):
        for t in trials:
            if t.state.name == "COMPLETE" and t.intermediate_values:
                curve = Curve(dict(t.params), sorted(t.intermediate_values.items()), t.values[0], feasible(t))
                pool.setdefault(tuple(sorted(t.params.items())), curve)
    last = max(c.points[-1][0] for c in pool.values())
    return [c for c in pool.values() if c.points[-1][0] == last]


def expected_best(values: Sequence[float], k: int) -> float:
    """E[min of ``k`` values drawn without replacement from ``values``] = Σ_i v_(i) C(n−1−i, k−1) / C(n, k), the
    values sorted ascending (v_(i) is the minimum of a draw exactly when the draw holds it and k − 1 larger ones)."""
    ordered, n = sorted(values), len(values)
    return sum(v * math.comb(n - 1 - i, k - 1) for i, v in enumerate(ordered)) / math.comb(n, k)


def study_outcomes(journals: Sequence[Path]) -> list[tuple[float, int, int]]:
    """Per kept study: the best feasible complete value (NaN if none), the training steps of all its trials (a
    pruned or failed trial counts its last reported step) and the number of trials."""
    from nflab.tune import feasible

    out = []
    for trials in kept_studies(journals):
        done = [t.values[0] for t in trials if t.state.name == "COMPLETE" and feasible(t)]
        steps = sum(max(t.intermediate_values, default=0) for t in trials)
        out.append((min(done, default=math.nan), steps, len(trials)))
    return out


def judge(random_journals: Sequence[Path], studies: Sequence[Path], trials: int, steps: int) -> dict[str, Any]:
    """The search-quality verdict from kept journals. Baseline: random search without pruning of ``trials`` trials,
    its expected best computed exactly from the pooled complete trials of ``random_journals`` (random studies
    without pruning: i.i.d. configurations), with a bootstrap standard error over the pool (2,000 resamples), and
    the same expectation for fewer trials (the nats random search reaches with that share of the steps). Candidate:
    each kept study of ``studies`` (best nats, steps as a share of ``trials`` × ``steps``); mean, standard error,
    and the difference to the baseline with the two errors combined."""
    import random

    pool = [c.value for c in full_curves(random_journals) if c.feasible]
    rng = random.Random(0)
    boot = [expected_best([rng.choice(pool) for _ in pool], trials) for _ in range(2000)]
    base = expected_best(pool, trials)
    out: dict[str, Any] = {
        "pool": len(pool),
        "random_expected_best": round(base, 4),
        "random_expected_best_se": round(statistics.stdev(boot), 4),
        "random_expected_best_by_trials": {k: round(expected_best(pool, k), 4) for k in range(4, trials + 1, 2)},
    }
    results = study_outcomes(studies)
    if results:
        bests = [b for b, _, _ in results if math.isfinite(b)]
        shares = [s / (trials * steps) for _, s, _ in results]
        se = statistics.stdev(bests) / len(bests) ** 0.5 if len(bests) > 1 else math.nan
        out |= {
            "studies": [(round(b, 4), round(100 * s, 1)) for (b, _, _), s in zip(results, shares, strict=True)],
            "without_best": len(results) - len(bests),
            "best_mean": round(statistics.fmean(bests), 4),
            "best_se": round(se, 4),
            "steps_share_mean": round(100 * statistics.fmean(shares), 1),
            "steps_share_se": round(100 * statistics.stdev(shares) / len(shares) ** 0.5, 1) if len(shares) > 1 else 0,
            "behind_random_by": round(statistics.fmean(bests) - base, 4),
            "behind_random_by_se": round(math.hypot(se, statistics.stdev(boot)), 4),
        }
    return out


def _simulate(study: Any, draw: Any, trials: int, parallel: int) -> tuple[float, int]:
    """Run ``trials`` trials of ``study``, ``parallel`` in flight, each trial's learning curve given by
    ``draw(trial)`` (a :class:`Curve`) and every step taking the same time; reports go to the study's pruner as the
    driver sends them. Returns the best feasible complete value and the steps spent (a pruned trial counts the steps
    it reached)."""
    import heapq

    import optuna

    active: list[tuple[int, int, Any, Curve, int]] = []
    asked, best, spent = 0, float("inf"), 0

    def ask(now: int) -> None:
        nonlocal asked
        trial = study.ask(getattr(draw, "distributions", None))
        curve = draw(trial)
        asked += 1
        heapq.heappush(active, (now + curve.points[0][0], asked, trial, curve, 0))

    for _ in range(parallel):
        ask(0)
    while active:
        now, order, trial, curve, i = heapq.heappop(active)
        step, nats = curve.points[i]
        trial.report(nats, step)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif i + 1 < len(curve.points):
            heapq.heappush(active, (now + curve.points[i + 1][0] - step, order, trial, curve, i + 1))
            continue
        else:
            study.tell(trial, curve.value)
            best = min(best, curve.value) if curve.feasible else best
        spent += step
        if asked < trials:
            ask(now)
    return best, spent


def _summary(results: list[tuple[float, int]], budget: int) -> dict[str, Any]:
    """Mean best nats over the studies that completed a feasible trial (``without_best`` counts the others) and
    the mean share of ``budget`` spent, with standard errors."""
    bests = [r[0] for r in results if math.isfinite(r[0])]
    spent = [r[1] / budget for r in results]
    n = len(bests)
    std = statistics.stdev(bests) if n > 1 else math.nan
    return {
        "without_best": len(results) - n,
        "best_nats_mean": statistics.fmean(bests) if bests else math.nan,
        "best_nats_std": std,
        "best_nats_se": std / n**0.5 if n else math.nan,
        "steps_share": statistics.fmean(spent),
        "steps_share_se": statistics.stdev(spent) / len(spent) ** 0.5,
        "first": [(round(b, 4), round(s / budget, 3)) for b, s in results[:4]],
    }


class _PoolDraw:
    """``draw`` for :func:`_simulate`: trial i of the study is curve ``order[i]`` of the pool (the replay)."""

    def __init__(self, pool: list[Curve], order: list[int]) -> None:
        self.pool, self.order = pool, order

    def __call__(self, trial: Any) -> Curve:
        return self.pool[self.order[trial.number]]


def replay(journal: Path, trials: int, overrides: dict[str, list[str]], orders: int, seed: int = 0) -> dict[str, Any]:
    """Random search of ``trials`` trials with each pruner, replayed ``orders`` times from a pool of full learning
    curves (a random study without pruning): each order draws ``trials`` curves of the pool without replacement and
    feeds them one trial at a time (``parallel: 1``) through the pruner nflab builds for the catalog study with
    ``overrides``; a pruned trial spends the steps it reached, a complete one its value (infeasible ones never
    best). The baseline row is the same draws without a pruner: the expected best of ``trials`` random trials."""
    import random

    import optuna

    from nflab.settings import load_settings
    from nflab.tune import make_pruner, prepare_study

    pool = full_curves([journal])
    settings = load_settings()
    rng = random.Random(seed)
    draws = [rng.sample(range(len(pool)), trials) for _ in range(orders)]
    budget = trials * pool[0].points[-1][0]
    out: dict[str, Any] = {"pool": len(pool), "trials": trials, "orders": orders}
    for label, extra in {"random, no pruning": RANDOM_SEARCH, **overrides}.items():
        prep = prepare_study(CATALOG, extra, settings)
        results = [  # the study's name picks Hyperband's brackets: fixed per draw, as before
            _simulate(
                optuna.create_study(study_name=f"replay-{k}", pruner=make_pruner(prep)), _PoolDraw(pool, d), trials, 1
            )
            for k, d in enumerate(draws)
        ]
        out[label] = _summary(results, budget)
    return out


class Landscape:
    """A surrogate of the catalog study (Eggensperger et al., AAAI 2015: surrogate benchmarks for HPO): a
    configuration's learning curve is the inverse-squared-distance mean of the ``k`` nearest measured curves, in the
    unit cube of the search space (log scale for log ranges; a categorical differs by 1). ``k = 1`` answers the
    nearest measured trial, so random configurations see the pool as random search did."""

    def __init__(self, pool: list[Curve], distributions: dict[str, Any], k: int) -> None:
        self.pool, self.distributions, self.k = pool, distributions, k
        self.points = [self._unit(c.params) for c in pool]

    def _unit(self, params: dict[str, Any]) -> list[float]:
        out = []
        for name, d in self.distributions.items():
            v = params[name]
            if hasattr(d, "choices"):  # one-hot, scaled so that two different choices lie 1 apart
                out.extend(float(c == v) / math.sqrt(2) for c in d.choices)
            elif d.log:
                out.append((math.log(v) - math.log(d.low)) / (math.log(d.high) - math.log(d.low)))
            else:
                out.append((v - d.low) / (d.high - d.low))
        return out

    def __call__(self, trial: Any) -> Curve:
        return self.curve(trial.params)

    def curve(self, params: dict[str, Any]) -> Curve:
        """The learning curve the surrogate answers for ``params``; its value is the curve's best (the objective is
        the run's best evaluated nats), its feasibility the nearest trial's."""
        x = self._unit(params)
        near = sorted((math.dist(x, p), i) for i, p in enumerate(self.points))[: self.k]
        curves = [self.pool[i] for _, i in near]
        if self.k == 1 or near[0][0] < 1e-12:
            return Curve(params, curves[0].points, curves[0].value, curves[0].feasible)
        weights = [1 / d**2 for d, _ in near]
        total = sum(weights)
        points = [
            (step, sum(w * c.points[j][1] for w, c in zip(weights, curves, strict=True)) / total)
            for j, (step, _) in enumerate(curves[0].points)
        ]
        return Curve(params, points, min(v for _, v in points), curves[0].feasible)


def surrogate(
    journals: Sequence[Path], trials: int, variants: dict[str, list[str]], seeds: int, ks: Sequence[int]
) -> dict[str, Any]:
    """Expected best nats and steps of real Optuna studies (nflab's own sampler and pruner for the catalog study with
    each variant's ``--set`` overrides, sampler seeds 0…``seeds``−1, the catalog's ``parallel``) on the
    :class:`Landscape` of the kept studies' curves: what a sampler *and* pruner together do, over many seeds, in
    seconds; real studies then check the choice. Random search without pruning is the baseline row."""
    import optuna

    from nflab.settings import load_settings
    from nflab.tune import distributions, make_pruner, make_sampler, prepare_study

    pool = full_curves(journals)
    settings = load_settings()
    budget = trials * pool[0].points[-1][0]
    out: dict[str, Any] = {"pool": len(pool), "trials": trials, "seeds": seeds}
    rows = {
        "random, no pruning": RANDOM_SEARCH,
        **variants,
    }
    for k in ks:
        for label, extra in rows.items():
            results = []
            for seed in range(seeds):
                prep = prepare_study(CATALOG, [*extra, f"tune.sampler.seed={seed}"], settings)
                land = Landscape(pool, distributions(prep.dims), k)
                study = optuna.create_study(
                    study_name=f"surrogate-{seed}", sampler=make_sampler(prep), pruner=make_pruner(prep)
                )
                results.append(_simulate(study, land, trials, prep.tune.parallel))
            out[f"k={k}, {label}"] = _summary(results, budget)
            print(f"k={k}, {label}: {json.dumps(out[f'k={k}, {label}'])}", file=sys.stderr, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-configs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1, help="overhead: tune/campaign pairs (order alternates)")
    parser.add_argument("--grid-steps", type=int, default=1500, help="steps of each overhead run (~20 s on 1 core)")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--steps", type=int, default=600, help="train.steps of the search-quality studies")
    parser.add_argument("--startup", type=int, default=None, help="TPE's random start-up trials (Optuna: 10)")
    parser.add_argument("--pruners", nargs="+", default=["hyperband"], help="pruners tried with TPE (search quality)")
    parser.add_argument("--warmup", type=int, default=None, help="tune.pruner.warmup_steps (default: the catalog's)")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="search quality: KEY=VALUE for TPE")
    parser.add_argument("--only", choices=("overhead", "search"), default=None)
    parser.add_argument("--no-baseline", action="store_true", help="search quality: skip the random baseline")
    parser.add_argument("--keep", type=Path, default=None, help="search quality: copy each study's journal here")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="search quality: TPE's sampler seeds")
    parser.add_argument("--replay", type=Path, default=None, help="a kept random study's journal: replay pruners")
    parser.add_argument("--orders", type=int, default=200, help="--replay: random draws of --trials trials; "
                        "--surrogate: sampler seeds per setting")  # fmt: skip
    parser.add_argument("--surrogate", type=Path, nargs="+", default=None, help="kept studies' journals: simulate "
                        "the SURROGATE settings on their curves")  # fmt: skip
    parser.add_argument("--judge", type=Path, nargs="*", default=None, help="kept studies' journals: the verdict "
                        "against random search (exact expectation from --random, with its bootstrap SE)")  # fmt: skip
    parser.add_argument("--random", type=Path, nargs="+", default=[DATA / "random-40-trials.journal"],
                        help="--judge: random studies without pruning (the baseline's pool)")  # fmt: skip
    parser.add_argument("--k", type=int, nargs="+", default=[1, 3], help="--surrogate: nearest curves averaged")
    args = parser.parse_args()
    if args.judge is not None:
        print(json.dumps(judge(args.random, args.judge, args.trials, args.steps), indent=1), flush=True)
        return
    if args.surrogate is not None:
        print(json.dumps(surrogate(args.surrogate, args.trials, SURROGATE, args.orders, args.k), indent=1), flush=True)
        return
    if args.replay is not None:
        print(json.dumps(replay(args.replay, args.trials, REPLAYED, args.orders), indent=1), flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="nflab-tune-bench-") as tmp:
        folder = Path(tmp)
        report: dict[str, Any] = {}
        if args.only in (None, "overhead"):
            rows = []
            for i in range(args.repeats):  # alternating which command goes first cancels a drift of the machine
                (folder / f"r{i}").mkdir()
                rows.append(overhead(folder / f"r{i}", args.n_configs, args.grid_steps, campaign_first=i % 2 == 1))
                print(json.dumps(rows[-1], indent=1), flush=True)
            keys = ("tune_s", "campaign_s", "overhead", "trial_phase_s", "campaign_run_phase_s", "fixed_s_tune",
                    "fixed_s_campaign", "busy_tune_trial_phase", "busy_campaign_run_phase")  # fmt: skip
            report["overhead"] = {f"median_{k}": statistics.median(r[k] for r in rows) for k in keys}
            print(json.dumps(report["overhead"], indent=1), flush=True)
        if args.only in (None, "search"):
            report["search"] = search(
                folder, args.trials, args.steps, args.startup, args.pruners, args.warmup,
                baseline=not args.no_baseline, keep=args.keep, seeds=args.seeds, sets=args.sets,
            )  # fmt: skip
            print(json.dumps(report["search"], indent=1), flush=True)


if __name__ == "__main__":
    main()
