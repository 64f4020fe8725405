"""E1 (Monotone Flows, Fig. 4): regress a 1-D target with a two-block residual / inverse-residual / monotone map.

Replaces density training for the run. Per step: fresh x ~ U(domain) (``train.batch_size``, the run's data
generator), loss = MSE(f(x), target(x)), Adam (``train`` options: lr, betas, weight decay, warm-up, clipping), then
the Lipschitz hooks (power iterations). Every ``train.eval_every`` steps and at the end: the MSE on
``analysis.grid`` evenly spaced points of the domain. Records ``train_mse`` / ``test_mse`` per step,
``best_mse`` / ``final_mse``, result rows with metric ``mse`` (split test, kinds best and final, budget
``grid-<points>``), and writes ``fit1d.json`` (errors, history, the fit on the grid) and ``fit1d.png``.
Solves use the fixed-point defaults (1e−6 forward, 1e−9 backward) in float64 and a 1e−6 backward tolerance in
float32. No checkpoints: a retried run starts again (a few thousand 1-D steps).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from nflab.flows import hooks
from nflab.flows.analysis.fit1d import VARIANT_LABELS, build_fit1d, slope_range
from nflab.flows.data import sample_1d
from nflab.flows.solvers import SolverConfig

from ..optim import clip_gradients, lr_at, make_optimizer, set_lr
from ..plots import _save as save_png
from ..seeding import make_generator, seed_everything
from ..tracking import Tracker
from ..train import TRAIN_DEFAULTS, RunFailure, TrainState, pick_dtype, section
from .common import AnalysisOutcome, analysis_dir, analysis_options, log_files, write_json

MODEL_OPTIONS = ("branch", "activation", "coeff", "hidden", "dense_depth", "dense_growth", "lip_coeff")


def fit_figure(grid_x: torch.Tensor, target: torch.Tensor, fit: torch.Tensor, path: Path, *, title: str) -> Path:
    """Target and fit on the grid."""
    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    x = grid_x.double().squeeze(1).numpy()
    ax.plot(x, target.double().squeeze(1).numpy(), color="black", lw=2, label="target")
    ax.plot(x, fit.double().squeeze(1).numpy(), color="tab:red", lw=1.5, label="fit")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(title, fontsize=10)
    return save_png(fig, path)


def _slopes(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(min, max) of the finite-difference slope of y(x) on the grid."""
    slope = torch.diff(y.squeeze(1)) / torch.diff(x.squeeze(1))
    return float(slope.min()), float(slope.max())


def run_fit1d(
    spec: Mapping[str, Any],
    run_dir: Path,
    tracker: Tracker,
    state: TrainState,
    *,
    data_root: str | None = None,
    progress: Any = None,
) -> AnalysisOutcome:
    """Train, evaluate, write and log one E1 fit (see module docstring); fills ``state.step``."""
    options = analysis_options(spec)
    tcfg = section(spec, "train", TRAIN_DEFAULTS)
    seed = int(spec.get("seed", tcfg["seed"]))
    run_key, total = str(spec.get("run_key", "run")), int(tcfg["steps"])
    dtype = pick_dtype(tcfg)
    seed_everything(seed)
    solver = SolverConfig() if dtype == torch.float64 else SolverConfig(backward_tol=1e-6)
    model_options = {k: options[k] for k in MODEL_OPTIONS}
    model = build_fit1d(str(options["variant"]), solver=solver, **model_options).to(dtype=dtype)
    optimizer = make_optimizer(model, tcfg)
    data_gen = make_generator(seed, "data")
    target = str(options["target"])
    grid_x, grid_y = sample_1d(target, int(options["grid"]), linspace=True, dtype=dtype)
    params = [p for p in model.parameters() if p.requires_grad]
    log_every, eval_every = (max(1, int(tcfg[k] or total)) for k in ("log_every", "eval_every"))
    history: list[dict[str, float]] = []
    best: dict[str, float] | None = None

    def grid_mse() -> tuple[float, torch.Tensor]:
        hooks.before_evaluation(model)
        model.eval()
        try:
            with torch.no_grad():
                fit = model(grid_x)[0]
        finally:
            model.train()
        return float(((fit - grid_y) ** 2).mean()), fit

    model.train()
    fit = grid_y
    for step in range(1, total + 1):
        lr = lr_at(step - 1, float(tcfg["lr"]), tcfg.get("warmup_steps"))
        set_lr(optimizer, lr)
        x, y = sample_1d(target, int(tcfg["batch_size"]), generator=data_gen, dtype=dtype)
        optimizer.zero_grad(set_to_none=True)
        loss = ((model(x)[0] - y) ** 2).mean()
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise RunFailure(f"non-finite loss ({loss_value}) at step {step}")
        loss.backward()
        grad_norm = clip_gradients(params, tcfg.get("grad_clip"))
        optimizer.step()
        hooks.after_optimizer_step(model)
        state.step = step
        metrics: dict[str, Any] = {"train_mse": loss_value, "lr": lr, "grad_norm": grad_norm}
        if step % eval_every == 0 or step == total:
            mse, fit = grid_mse()
            history.append({"step": step, "mse": mse})
            if best is None or mse < best["mse"]:
                best = {"step": step, "mse": mse}
            metrics["test_mse"] = mse
        if step % log_every == 0 or step == total or "test_mse" in metrics:
            tracker.log_metrics(metrics, step)
            if progress is not None and (step % log_every == 0 or step == total):
                progress(run_key, step, total, metrics)
    assert best is not None  # the last step always evaluates
    final = history[-1]
    tracker.log_metrics({"best_mse": best["mse"], "final_mse": final["mse"]}, total)
    budget = f"grid-{int(options['grid'])}"
    rows = [
        {"split": "test", "metric": "mse", "value": ev["mse"], "budget": budget, "step": int(ev["step"]), "kind": kind}
        for kind, ev in (("best", best), ("final", final))
    ]
    lip_bound = float(options["coeff"])  # a branch's Lipschitz constant is at most its layers' coefficient
    slope_min, slope_max = _slopes(grid_x, fit)
    label = VARIANT_LABELS[str(options["variant"])]
    report = {
        "target": target,
        "variant": options["variant"],
        "label": label,
        "steps": total,
        "grid_points": int(options["grid"]),
        "best_mse": best["mse"],
        "best_step": best["step"],
        "final_mse": final["mse"],
        "history": history,
        "fit_slope_range": [slope_min, slope_max],
        "unscaled_slope_bound": list(slope_range(lip_bound, str(options["variant"]))),
        "options": {k: options[k] for k in ("target", "variant", *MODEL_OPTIONS, "grid")},
        "grid": {
            "x": grid_x.squeeze(1).double().tolist(),
            "target": grid_y.squeeze(1).double().tolist(),
            "fit": fit.squeeze(1).double().tolist(),
        },
    }
    folder = analysis_dir(run_dir)
    title = f"{label} on {target}: grid MSE {final['mse']:.3g} ({total} steps)"
    files = [
        write_json(folder / "fit1d.json", report),
        fit_figure(grid_x, grid_y, fit, folder / "fit1d.png", title=title),
    ]
    log_files(tracker, files)
    return AnalysisOutcome(results=rows, artifacts=files)
