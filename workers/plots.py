"""PNG figures of a trained flow, drawn with matplotlib's Agg canvas (no pyplot, no global backend switch).

- 2-D toy data: the model density exp(log p) on a 200×200 grid over [−4, 4]² next to a scatter of samples.
- Images: an 8×8 grid of samples, clipped to [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn

GRID_SIZE = 200
GRID_LIMIT = 4.0
TOY_SAMPLES = 2000
IMAGE_GRID = 8


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


@torch.no_grad()
def density_grid(model: nn.Module, *, chunk: int = 4000) -> torch.Tensor:
    """exp(log p) on the ``GRID_SIZE``² grid over [−GRID_LIMIT, GRID_LIMIT]², rows = y (bottom to top)."""
    ref = next(model.parameters())
    axis = torch.linspace(-GRID_LIMIT, GRID_LIMIT, GRID_SIZE, dtype=ref.dtype, device=ref.device)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
    exact = model.logdet_kind != "exact" and getattr(model, "has_exact_log_prob", True)
    lp = torch.cat([model.log_prob(c, exact=exact) for c in pts.split(chunk)])
    return torch.nan_to_num(lp.exp(), nan=0.0, posinf=0.0).reshape(GRID_SIZE, GRID_SIZE).cpu()


def toy_figure(model: nn.Module, out_dir: Path, generator: torch.Generator, *, title: str = "") -> Path:
    """``density.png``: density heat-map and sample scatter of a 2-D flow."""
    density = density_grid(model)
    samples = torch.nan_to_num(model.sample(TOY_SAMPLES, generator=generator)).double().cpu().numpy()
    fig = Figure(figsize=(8, 4))
    ax_d, ax_s = fig.subplots(1, 2)
    lim = (-GRID_LIMIT, GRID_LIMIT)
    ax_d.imshow(density.numpy(), origin="lower", extent=(*lim, *lim), cmap="magma")
    ax_d.set_title("density")
    ax_s.scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.5)
    ax_s.set_xlim(*lim)
    ax_s.set_ylim(*lim)
    ax_s.set_aspect("equal")
    ax_s.set_title("samples")
    for ax in (ax_d, ax_s):
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    return _save(fig, out_dir / "density.png")


def image_figure(model: nn.Module, out_dir: Path, generator: torch.Generator, *, title: str = "") -> Path:
    """``samples.png``: an 8×8 grid of image samples in [0, 1]."""
    n = IMAGE_GRID * IMAGE_GRID
    x = torch.nan_to_num(model.sample(n, generator=generator)).clamp(0, 1).double().cpu()
    c, h, w = x.shape[1:]
    grid = x.reshape(IMAGE_GRID, IMAGE_GRID, c, h, w).permute(0, 3, 1, 4, 2).reshape(IMAGE_GRID * h, IMAGE_GRID * w, c)
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.imshow(grid[..., 0].numpy() if c == 1 else grid.numpy(), cmap="gray" if c == 1 else None, vmin=0, vmax=1)
    ax.axis("off")
    if title:
        ax.set_title(title)
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
