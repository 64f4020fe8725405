"""PNG figures of a trained flow, drawn with matplotlib's Agg canvas (no pyplot, no global backend switch).

- 2-D toy data: the model density p(x) on a 200×200 grid over [−4, 4]² (axes in data units, a colour bar in
  density units) next to a scatter of samples on the same axes; flows whose evaluation is an importance-weighted
  bound (K samples per point: padding, CIF) on a 100×100 grid, which keeps the figure's cost near one evaluation.
- Images: an 8×8 grid of samples, clipped to [0, 1], with a gap between tiles.
Every figure is titled by :func:`run_title`: the model (family, CIF base, preset, padding kind), the dataset,
and the reported metric with its value, kind and budget at the selected step.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn

GRID_SIZE = 200
IW_GRID_SIZE = 100  # the grid of flows evaluated by importance-weighted bounds
GRID_LIMIT = 4.0
TOY_SAMPLES = 2000
IMAGE_GRID = 8
TILE_GAP = 1  # pixels between image tiles
GAP_VALUE = 1.0  # white


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def describe_model(model_cfg: Mapping[str, Any]) -> str:
    """``realnvp (preset small, zero padding ×2)``, ``cif on realnvp (preset small)``: what a row or plot shows."""
    family = str(model_cfg.get("family") or "?")
    name = f"{family} on {model_cfg['base']}" if model_cfg.get("base") else family
    details = [f"preset {model_cfg.get('preset') or 'default'}"]
    if model_cfg.get("padding"):
        details.append(f"{model_cfg.get('padding_kind', 'gaussian')} padding ×{model_cfg['padding']}")
    if model_cfg.get("dequantization") == "variational":
        details.append("variational dequantization")
    return f"{name} ({', '.join(details)})"


def run_title(
    model_cfg: Mapping[str, Any], dataset: str, evaluation: Mapping[str, Any] | None, *, run_key: str = ""
) -> str:
    """Two lines: the model on the dataset, then the reported test metric (value, kind, budget, step)."""
    head = f"{describe_model(model_cfg)} on {dataset}" + (f"  [{run_key}]" if run_key else "")
    if not evaluation:
        return head
    metric = "bpd" if evaluation.get("bpd") is not None else "nats"
    value = evaluation[metric]
    return (
        f"{head}\ntest {metric} {value:.4f} ({evaluation.get('quantity', '?')}, {evaluation.get('budget', '?')}) "
        f"at step {evaluation.get('step')}"
    )


def grid_size(model: nn.Module) -> int:
    """``IW_GRID_SIZE`` for flows evaluated with importance samples, else ``GRID_SIZE``."""
    return IW_GRID_SIZE if getattr(model, "importance_samples", ()) else GRID_SIZE


@torch.no_grad()
def density_grid(model: nn.Module, *, chunk: int = 4000) -> torch.Tensor:
    """exp(log p) on the ``grid_size``² grid over [−GRID_LIMIT, GRID_LIMIT]², rows = y (bottom to top)."""
    ref = next(model.parameters())
    size = grid_size(model)
    axis = torch.linspace(-GRID_LIMIT, GRID_LIMIT, size, dtype=ref.dtype, device=ref.device)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
    exact = model.logdet_kind != "exact" and getattr(model, "has_exact_log_prob", True)
    lp = torch.cat([model.log_prob(c, exact=exact) for c in pts.split(chunk)])
    return torch.nan_to_num(lp.exp(), nan=0.0, posinf=0.0).reshape(size, size).cpu()


def toy_figure(model: nn.Module, out_dir: Path, generator: torch.Generator, *, title: str = "") -> Path:
    """``density.png``: density heat-map (with colour bar) and sample scatter of a 2-D flow, on shared axes."""
    return _save(toy_canvas(model, generator, title=title), out_dir / "density.png")


def toy_canvas(model: nn.Module, generator: torch.Generator, *, title: str = "") -> Figure:
    """The figure of :func:`toy_figure`."""
    density = density_grid(model)
    samples = torch.nan_to_num(model.sample(TOY_SAMPLES, generator=generator)).double().cpu().numpy()
    fig = Figure(figsize=(10, 4.6), layout="constrained")
    ax_d, ax_s = fig.subplots(1, 2)
    lim = (-GRID_LIMIT, GRID_LIMIT)
    image = ax_d.imshow(density.numpy(), origin="lower", extent=(*lim, *lim), cmap="magma")
    fig.colorbar(image, ax=ax_d, label="model density p(x)", shrink=0.9)
    ax_d.set_title(f"density (exp log p on a {density.shape[0]}² grid)", fontsize=10)
    ax_s.scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.5)
    ax_s.set_xlim(*lim)
    ax_s.set_ylim(*lim)
    ax_s.set_aspect("equal")
    ax_s.set_title(f"{TOY_SAMPLES} samples", fontsize=10)
    for ax in (ax_d, ax_s):
        ax.set_xlabel("x₁")
        ax.set_ylabel("x₂")
        ax.grid(True, alpha=0.2)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def tile_images(x: torch.Tensor, rows: int, cols: int, *, gap: int = TILE_GAP, fill: float = GAP_VALUE) -> torch.Tensor:
    """``[rows·cols, c, h, w]`` → one ``[rows·(h+gap)−gap, cols·(w+gap)−gap, c]`` canvas with ``fill`` between tiles."""
    c, h, w = x.shape[1:]
    canvas = torch.full((rows * (h + gap) - gap, cols * (w + gap) - gap, c), fill, dtype=x.dtype)
    for i in range(rows):
        for j in range(cols):
            top, left = i * (h + gap), j * (w + gap)
            canvas[top : top + h, left : left + w] = x[i * cols + j].permute(1, 2, 0)
    return canvas


def image_figure(model: nn.Module, out_dir: Path, generator: torch.Generator, *, title: str = "") -> Path:
    """``samples.png``: an 8×8 grid of image samples in [0, 1], separated by white gaps."""
    n = IMAGE_GRID * IMAGE_GRID
    x = torch.nan_to_num(model.sample(n, generator=generator)).clamp(0, 1).double().cpu()
    c = x.shape[1]
    grid = tile_images(x, IMAGE_GRID, IMAGE_GRID)
    fig = Figure(figsize=(5.5, 6))
    ax = fig.subplots()
    ax.imshow(grid[..., 0].numpy() if c == 1 else grid.numpy(), cmap="gray" if c == 1 else None, vmin=0, vmax=1)
    ax.axis("off")
    ax.set_title(f"{n} samples" + (f"\n{title}" if title else ""), fontsize=9)
    return _save(fig, out_dir / "samples.png")


def make_plots(
    model: nn.Module, shape: tuple[int, ...], out_dir: Path, generator: torch.Generator, *, title: str = ""
) -> list[Path]:
    """The figures that apply to this data shape (none for other shapes)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    try:
        if len(shape) == 1 and shape[0] == 2:
            return [toy_figure(model, out_dir, generator, title=title)]
        if len(shape) == 3:
            return [image_figure(model, out_dir, generator, title=title)]
        return []
    finally:
        model.train()


def comparison_figure(
    tiles: Mapping[tuple[str, str], Path], rows: list[str], cols: list[str], path: Path, *, title: str = ""
) -> Path:
    """One PNG of per-run figures side by side: ``tiles[(row, col)]`` (a PNG, e.g. a run's ``density.png``) in the grid
    of ``rows`` (e.g. datasets) × ``cols`` (e.g. families); a missing tile is left blank with a note."""
    import matplotlib.image as mpimg

    fig = Figure(figsize=(5.2 * len(cols), 2.6 * len(rows) + 0.4), layout="constrained")
    axes = fig.subplots(len(rows), len(cols), squeeze=False)
    for i, row in enumerate(rows):
        for j, col in enumerate(cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            tile = tiles.get((row, col))
            if tile is not None and Path(tile).is_file():
                ax.imshow(mpimg.imread(str(tile)))
            else:
                ax.text(0.5, 0.5, "no figure (run not finished?)", ha="center", va="center", fontsize=9)
            if i == 0:
                ax.set_title(col, fontsize=12)
            if j == 0:
                ax.set_ylabel(row, fontsize=12)
    if title:
        fig.suptitle(title, fontsize=12)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(fig, path)


def runtime_figure(rows: list[Mapping[str, Any]], path: Path, *, title: str = "") -> Path:
    """E5: ms per training step of each family's variants (plain, +Lipschitz, +log-det) as grouped bars (median wall,
    IQR) with the process's CPU time as a black tick (less sensitive to other processes on a shared machine), log
    scale; ``rows`` as returned by ``nflab.flows.analysis.runtime.runtime_breakdown``."""
    variants = ("plain", "+Lipschitz", "+log-det")
    colours = {"plain": "tab:green", "+Lipschitz": "tab:orange", "+log-det": "tab:red"}
    fig = Figure(figsize=(max(6.0, 1.1 * len(rows) + 2), 4.2), layout="constrained")
    ax = fig.subplots()
    width = 0.27
    for k, variant in enumerate(variants):
        xs, heights, errors, cpu = [], [], [], []
        for i, row in enumerate(rows):
            values = row["variants"].get(variant)
            if values is not None:
                xs.append(i + (k - 1) * width)
                heights.append(values["wall_ms"])
                errors.append(values["wall_iqr_ms"] / 2)
                cpu.append(values["cpu_ms"])
        ax.bar(xs, heights, width, yerr=errors, label=variant, color=colours[variant], capsize=2)
        label = "CPU time of the process" if k == len(variants) - 1 else None
        ax.scatter(xs, cpu, marker="_", s=160, color="black", zorder=3, label=label)
    ax.set_xticks(range(len(rows)), [str(row["family"]) for row in rows], rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("ms per training step (median wall, IQR bars)")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(title="variant", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(fig, path)
