"""E1 (Monotone Flows, Fig. 4): regress a 1-D target with a two-block residual / inverse-residual / monotone map.

Replaces density training for the run. Per step: fresh x ~ U(domain) (``train.batch_size``, the run's data
generator), loss = MSE(f(x), target(x)), Adam (``train`` options: lr, betas, weight decay, warm-up, clipping), then
the Lipschitz hooks (power iterations). Every ``train.eval_every`` steps and at the end: the MSE on a validation
sample (``analysis.grid`` points of U(domain) drawn once from the run's ``validation`` stream), which selects the
reported weights, and on the test grid (``analysis.grid`` evenly spaced points of the domain), which only reports.
Records ``train_mse`` / ``val_mse`` / ``test_mse`` per step, ``best_mse`` (the grid MSE of the weights with the
best validation MSE) / ``final_mse``, result rows with metric ``mse`` (splits test and validation, kinds best
(rule ``val-best``) and final, budget ``grid-<points>``), and writes ``fit1d.json`` (errors, history, the fit of the
selected weights on the grid) and ``fit1d.png``.
Solves use the fixed-point defaults (1e−6 forward, 1e−9 backward) in float64 and a 1e−6 backward tolerance in
float32. No checkpoints: a retried run starts again (a few thousand 1-D steps).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
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
from ..train import Progress, RunFailure, TrainState, pick_dtype, section
from .common import AnalysisOutcome, analysis_dir, log_files, write_json

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


@dataclass
class FitHistory:
    """Validation and grid MSE at every evaluation, the selected (best validation) one with its weights and fit."""

    evaluations: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] | None = None
    best_weights: dict[str, torch.Tensor] | None = None
    fit: torch.Tensor | None = None

    def add(self, step: int, val_mse: float, mse: float, fit: torch.Tensor, model: torch.nn.Module) -> None:
        self.evaluations.append({"step": step, "val_mse": val_mse, "mse": mse})
        if self.best is None or val_mse < self.best["val_mse"]:
            self.best = {"step": step, "val_mse": val_mse, "mse": mse}
            self.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self.fit = fit


def train_fit(
    model: torch.nn.Module,
    target: str,
    grid: tuple[torch.Tensor, torch.Tensor],
    validation: tuple[torch.Tensor, torch.Tensor],
    tcfg: Mapping[str, Any],
    *,
    seed: int,
    tracker: Tracker,
    state: TrainState,
    run_key: str,
    progress: Progress | None,
) -> FitHistory:
    """The regression loop (see module docstring); logs metrics and progress, fills ``state.step``."""
    total = int(tcfg["steps"])
    dtype = next(model.parameters()).dtype
    optimizer = make_optimizer(model, tcfg)
    data_gen = make_generator(seed, "data")
    params = [p for p in model.parameters() if p.requires_grad]
    log_every, eval_every = (max(1, int(tcfg[k] or total)) for k in ("log_every", "eval_every"))
    grid_x, grid_y = grid
    history = FitHistory()
    model.train()
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
            val_mse = float(((predict(model, validation[0]) - validation[1]) ** 2).mean())
            fit = predict(model, grid_x)
            history.add(step, val_mse, float(((fit - grid_y) ** 2).mean()), fit, model)
            metrics.update({"val_mse": val_mse, "test_mse": history.evaluations[-1]["mse"]})
        if step % log_every == 0 or step == total or "test_mse" in metrics:
            tracker.log_metrics(metrics, step)
            if progress is not None and (step % log_every == 0 or step == total):
                progress(run_key, step, total, metrics)
    return history


def predict(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """f(x) in evaluation mode after the evaluation power iterations; leaves the model in training mode."""
    hooks.before_evaluation(model)
    model.eval()
    try:
        with torch.no_grad():
            return model(x)[0]
    finally:
        model.train()


def run_fit1d(
    spec: Mapping[str, Any],
    run_dir: Path,
    tracker: Tracker,
    state: TrainState,
    *,
    data_root: str | None = None,
    progress: Progress | None = None,
) -> AnalysisOutcome:
    """Train, evaluate, write and log one E1 fit (see module docstring)."""
    options = section(spec, "fit1d")
    tcfg = section(spec, "train")
    seed = int(spec["seed"])
    dtype = pick_dtype(tcfg)
    seed_everything(seed)
    solver = SolverConfig() if dtype == torch.float64 else SolverConfig(backward_tol=1e-6)
    variant, target = str(options["variant"]), str(options["target"])
    model = build_fit1d(variant, solver=solver, **{k: options[k] for k in MODEL_OPTIONS if k in options}).to(
        dtype=dtype
    )
    grid_x, grid_y = sample_1d(target, int(options["grid"]), linspace=True, dtype=dtype)
    validation = sample_1d(target, int(options["grid"]), generator=make_generator(seed, "validation"), dtype=dtype)
    history = train_fit(
        model,
        target,
        (grid_x, grid_y),
        validation,
        tcfg,
        seed=seed,
        tracker=tracker,
        state=state,
        run_key=str(spec.get("run_key", "run")),
        progress=progress,
    )
    best, final, fit = history.best, history.evaluations[-1], history.fit
    assert best is not None and fit is not None and history.best_weights is not None  # the last step evaluates
    model.load_state_dict(history.best_weights)  # what the report and the figure show: the selected weights
    tracker.log_metrics({"best_mse": best["mse"], "final_mse": final["mse"]}, state.step)
    budget, points = f"grid-{int(options['grid'])}", int(options["grid"])
    rows = [
        {
            "split": split,
            "metric": "mse",
            "value": ev[key],
            "budget": budget,
            "step": int(ev["step"]),
            "kind": kind,
            "selection": selection,
            "quantity": "exact",
            "n_samples": points,
        }
        for kind, selection, ev in (("best", "val-best", best), ("final", "final", final))
        for split, key in (("test", "mse"), ("validation", "val_mse"))
    ]
    label = VARIANT_LABELS[variant]
    report = {
        "target": target,
        "variant": variant,
        "label": label,
        "steps": state.step,
        "grid_points": int(options["grid"]),
        "best_mse": best["mse"],
        "best_step": best["step"],
        "best_val_mse": best["val_mse"],
        "selection": "val-best: the weights with the lowest validation MSE; the grid MSE only reports",
        "final_mse": final["mse"],
        "history": history.evaluations,
        "fit_slope_range": list(_slopes(grid_x, fit)),
        # with every output scale at 1; a branch's Lipschitz constant is at most its layers' coefficient
        "unscaled_slope_bound": list(slope_range(float(options["coeff"]), variant)),
        "options": {k: options[k] for k in ("target", "variant", *MODEL_OPTIONS, "grid") if k in options},
        "grid": {
            "x": grid_x.squeeze(1).double().tolist(),
            "target": grid_y.squeeze(1).double().tolist(),
            "fit": fit.squeeze(1).double().tolist(),
        },
    }
    folder = analysis_dir(run_dir)
    title = f"{label} on {target}: grid MSE {best['mse']:.3g} at step {best['step']} (val-best of {state.step} steps)"
    files = [
        write_json(folder / "fit1d.json", report),
        fit_figure(grid_x, grid_y, fit, folder / "fit1d.png", title=title),
    ]
    log_files(tracker, files)
    return AnalysisOutcome(results=rows, artifacts=files)
