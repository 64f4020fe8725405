"""E6 (Koehler, Mehta & Risteski): the fit error of K linear affine couplings on random linear maps, against K.

Replaces density training for the run (config ``kind: coupling_linear``). For each of ``maps`` targets T (iid
N(0, 1) entries, det T > 0, drawn from the run's data stream) and each K of ``couplings``: a regression of K
couplings with linear s and t on a fixed partition (``nflab.flows.analysis.coupling_linear``) with ``train``'s
steps, batch size, learning rate (Adam) and gradient clipping, evaluated every ``train.eval_every`` steps on
``test_points`` fixed Gaussian points. The error of a (T, K) pair is its relative test error E‖f(x) − Tx‖² / E‖Tx‖²
at the end of the fit (no selection on the test points; a diverged fit keeps its last finite error and is counted).
Records per K the median, mean, min and max over the maps (MLflow metrics ``e6_median_error`` … at step K), result
rows with metric ``rel_error`` (split test, kind final, budget ``couplings-<K>``, the median over the maps), and
writes ``coupling_linear.json`` (every error, the histories) and ``coupling_linear.png`` (error against K, log
scale). No checkpoints: a retried run starts again.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from nflab.flows.analysis.coupling_linear import fit_linear_map, random_linear_map

from ..plots import _save as save_png
from ..seeding import make_generator, seed_everything
from ..tracking import Tracker
from ..train import Progress, RunFailure, TrainState, pick_dtype, section
from .common import AnalysisOutcome, analysis_dir, log_files, write_json

THEORY = "Koehler et al.: K <= 47 couplings represent every such T; some T need K >= 3; 4-16 fit random T well"


def error_figure(summary: list[dict[str, Any]], errors: dict[int, list[float]], path: Path, *, title: str) -> Path:
    """Relative fit error against K: every map's error (dots) and the median over the maps (line), log scale."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    floor = 1e-16  # an exact fit still shows on a log axis
    for k, values in errors.items():
        ax.scatter([k] * len(values), [max(v, floor) for v in values], s=12, color="tab:blue", alpha=0.5)
    ks = [row["couplings"] for row in summary]
    ax.plot(ks, [max(row["median"], floor) for row in summary], color="tab:red", lw=1.5, marker="o", label="median")
    ax.axvline(3, color="grey", lw=0.8, ls=":")
    ax.axvline(47, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("K (linear affine couplings, fixed partition)")
    ax.set_ylabel("relative error E‖f(x) − Tx‖² / E‖Tx‖²")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(title, fontsize=9)
    return save_png(fig, path)


def run_coupling_linear(
    spec: Mapping[str, Any],
    run_dir: Path,
    tracker: Tracker,
    state: TrainState,
    *,
    data_root: str | None = None,
    progress: Progress | None = None,
) -> AnalysisOutcome:
    """Fit, write and log one E6 sweep (see module docstring)."""
    options = section(spec, "coupling_linear")
    tcfg = section(spec, "train")
    seed = int(spec["seed"])
    dtype = pick_dtype(tcfg)
    seed_everything(seed)
    dim, ks, n_maps = int(options["dim"]), [int(k) for k in options["couplings"]], int(options["maps"])
    steps, batch, lr = int(tcfg["steps"]), int(tcfg["batch_size"]), float(tcfg["lr"])
    eval_every = max(1, int(tcfg.get("eval_every") or steps))
    data_gen = make_generator(seed, "data")
    targets = [random_linear_map(dim, data_gen, dtype=dtype) for _ in range(n_maps)]
    test_x = torch.randn(int(options["test_points"]), dim, generator=make_generator(seed, "test"), dtype=dtype)
    run_key = str(spec.get("run_key", "run"))
    total = len(ks) * n_maps
    errors: dict[int, list[float]] = {k: [] for k in ks}
    histories: dict[int, list[list[tuple[int, float]]]] = {k: [] for k in ks}
    diverged: dict[int, int] = {k: 0 for k in ks}
    summary: list[dict[str, Any]] = []
    for k in ks:
        for i, target in enumerate(targets):
            fit = fit_linear_map(
                target, k, steps=steps, lr=lr, batch_size=batch, generator=data_gen, test_x=test_x,
                eval_every=eval_every, grad_clip=tcfg.get("grad_clip"),
            )  # fmt: skip
            errors[k].append(fit.error)
            diverged[k] += int(fit.diverged)
            histories[k].append(fit.history)
            state.step += 1
            if progress is not None:
                progress(run_key, state.step, total, {"couplings": k, "map": i, "rel_error": fit.error})
        values = errors[k]
        row = {
            "couplings": k,
            "median": statistics.median(values),
            "mean": statistics.fmean(values),
            "min": min(values),
            "max": max(values),
            "diverged": diverged[k],
        }
        summary.append(row)
        tracker.log_metrics({f"e6_{name}_error": row[name] for name in ("median", "mean", "min", "max")}, k)
    if not all(v == v for row in summary for v in row.values()):  # NaN: every evaluation of a fit diverged
        raise RunFailure("a coupling fit produced no finite error")
    rows = [
        {
            "split": "test",
            "metric": "rel_error",
            "value": row["median"],
            "budget": f"couplings-{row['couplings']}",
            "step": steps,
            "kind": "final",
            "selection": "final: the median over the maps of the error at the end of each fit",
            "quantity": "exact",
            "n_samples": int(options["test_points"]),
        }
        for row in summary
    ]
    report = {
        "dim": dim,
        "maps": n_maps,
        "steps_per_fit": steps,
        "batch_size": batch,
        "lr": lr,
        "test_points": int(options["test_points"]),
        "error": "relative: E||f(x) - Tx||^2 / E||Tx||^2 on fixed Gaussian test points at the end of each fit",
        "targets": "iid N(0, 1) entries conditioned on det T > 0",
        "theory": THEORY,
        "summary": summary,
        "errors": {str(k): v for k, v in errors.items()},
        "histories": {str(k): v for k, v in histories.items()},
    }
    folder = analysis_dir(run_dir)
    title = f"E6: {n_maps} random {dim}×{dim} maps, {steps} Adam steps per fit (lr {lr:g}, batch {batch})"
    report["grad_clip"] = tcfg.get("grad_clip")
    files = [
        write_json(folder / "coupling_linear.json", report),
        error_figure(summary, errors, folder / "coupling_linear.png", title=title),
    ]
    log_files(tracker, files)
    return AnalysisOutcome(results=rows, artifacts=files)
