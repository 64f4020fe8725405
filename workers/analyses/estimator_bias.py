"""E4 (i-ResNet Fig. 4): bias and std of log-det estimators vs the number of series terms, for the trained model.

Runs after the run's training on its best checkpoint (the evaluated weights), in float64 on CPU, on the first
``analysis.points`` held-out samples, with each block's evaluation-time estimator options (probe kind, roulette
distribution). Whole-flow numbers: the error of a sample is Σ_blocks (estimate − exact series) — see
``nflab.flows.analysis.estimator_bias_variance``. Writes ``estimator_bias.json`` and ``estimator_bias.png`` (|bias|
and std vs n, log y) and logs the MLflow metrics ``e4_<estimator>_<statistic>`` with step = n.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from nflab.flows import hooks
from nflab.flows.analysis import estimator_bias_variance

from .. import checkpoint as ckpt
from ..datasource import DataSource
from ..plots import _save as save_png
from ..plots import describe_model
from ..seeding import make_generator
from ..tracking import Tracker
from ..train import Progress, RunFailure, TrainState, build_model, section
from .common import AnalysisOutcome, analysis_dir, analysis_options, log_files, write_json

METRICS: dict[str, tuple[str, ...]] = {
    "truncated": ("bias", "abs_bias", "bias_se", "std", "expected_bias", "expected_abs_bias"),
    "roulette": ("bias", "abs_bias", "bias_se", "std", "mean_terms"),
}
TINY = 1e-300  # floor for log-scale plots


def trained_model(spec: Mapping[str, Any], run_dir: Path, shape: tuple[int, ...]) -> torch.nn.Module:
    """The run's model with its best-checkpoint weights (the newest step checkpoint if no best was written)."""
    model = build_model(section(spec, "model"), shape)
    folder = run_dir / "checkpoints"
    best = ckpt.best_checkpoint(folder)
    if best is not None:
        state = torch.load(best.path, map_location="cpu", weights_only=False)["model"]
    else:
        latest = ckpt.load_latest(folder)
        if latest is None:
            raise RunFailure(f"analysis.kind estimator_bias: no checkpoint of the trained model in {folder}")
        state = latest[1]["model"]
    model.load_state_dict(state)
    return model


def _band(ax: Any, n: np.ndarray, centre: np.ndarray, half_width: np.ndarray, colour: str) -> None:
    """A shaded ±1 standard-error band (floored at ``TINY`` for the log axis)."""
    ax.fill_between(
        n, np.maximum(centre - half_width, TINY), np.maximum(centre + half_width, TINY), color=colour, alpha=0.2
    )


def bias_figure(report: Mapping[str, Any], path: Path, *, title: str = "") -> Path:
    """Two log-y panels against the number of terms n, in nats of the whole-flow log-det: |bias| (left) and the
    per-point std (right) of both estimators, with ±1 standard-error bands of the Monte-Carlo estimates (bias: the
    s.e. of the mean error; std: std/√(2(R − 1)) for R draws per point)."""
    n = np.asarray(report["terms"])
    trunc, roul = report["truncated"], report["roulette"]
    repeats = int(report.get("repeats") or 2)
    std_se = 1.0 / np.sqrt(2.0 * max(repeats - 1, 1))
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    ax_bias, ax_std = fig.subplots(1, 2)
    ax_bias.semilogy(
        n, np.maximum(trunc["expected_abs_bias"], TINY), "o-", color="C0", label="truncated: exact E|bias|"
    )
    for est, marker, colour, label in ((trunc, "s--", "C1", "truncated"), (roul, "^-", "C2", "roulette")):
        abs_bias, se = np.asarray(est["abs_bias"]), np.asarray(est["bias_se"])
        ax_bias.semilogy(
            n, np.maximum(abs_bias, TINY), marker, color=colour, label=f"{label}: |mean error| (MC) ± 1 s.e."
        )
        _band(ax_bias, n, abs_bias, se, colour)
        std = np.asarray(est["std"])
        ax_std.semilogy(n, np.maximum(std, TINY), marker, color=colour, label=f"{label} ± 1 s.e.")
        _band(ax_std, n, std, std * std_se, colour)
    ax_bias.set_title("bias against the exact log-det", fontsize=10)
    ax_bias.set_ylabel("|bias| of log|det ∂f/∂x| (nats)")
    ax_std.set_title(f"std over probe draws ({repeats} per point, {report.get('points', '?')} points)", fontsize=10)
    ax_std.set_ylabel("std of the estimate (nats)")
    for ax in (ax_bias, ax_std):
        ax.set_xlabel("number of series terms n (roulette: exact terms)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_png(fig, path)


def run_estimator_bias(
    spec: Mapping[str, Any],
    run_dir: Path,
    tracker: Tracker,
    state: TrainState,
    *,
    data_root: str | None = None,
    progress: Progress | None = None,
) -> AnalysisOutcome:
    """Compute, write and log the E4 study of the trained run (see module docstring)."""
    options = analysis_options(spec)
    seed = int(spec["seed"])
    device = torch.device("cpu")
    data = DataSource(section(spec, "dataset"), seed=seed, dtype=torch.float64, device=device, data_root=data_root)
    model = trained_model(spec, run_dir, data.shape).to(dtype=torch.float64)
    hooks.before_evaluation(model)
    probe = data.heldout[: int(options["points"])].to(device)
    try:
        report = estimator_bias_variance(
            model, probe, list(options["terms"]), int(options["repeats"]), make_generator(seed, "analysis")
        )
    except ValueError as exc:
        raise RunFailure(f"analysis.kind estimator_bias: {exc}") from None
    family = section(spec, "model").get("family")
    report.update({"family": family, "dataset": data.name, "trained_steps": state.step})
    for i, n in enumerate(report["terms"]):
        metrics = {f"e4_{est}_{stat}": report[est][stat][i] for est, stats in METRICS.items() for stat in stats}
        tracker.log_metrics(metrics, n)
    tracker.log_metrics({"e4_exact_logdet_mean": report["exact_logdet_mean"]}, 0)
    folder = analysis_dir(run_dir)
    files = [
        write_json(folder / "estimator_bias.json", report),
        bias_figure(
            report,
            folder / "estimator_bias.png",
            title=f"{describe_model(section(spec, 'model'))} on {data.name}: log-det estimators "
            f"after {state.step} steps (selected checkpoint)",
        ),
    ]
    log_files(tracker, files)
    return AnalysisOutcome(artifacts=files)
