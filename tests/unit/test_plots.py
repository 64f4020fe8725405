"""Figures a researcher can read: labelled axes, a colour bar, the model and its reported number in the title,
gaps between image tiles."""

from __future__ import annotations

import torch

import nflab.flows as F
from nflab.workers.plots import describe_model, run_title, tile_images, toy_canvas


def test_titles_name_the_model_and_the_reported_number() -> None:
    evaluation = {"nats": 3.0412, "bpd": None, "quantity": "bound", "budget": "iwae-100", "step": 4500}
    title = run_title(
        {"family": "realnvp", "padding": 2, "padding_kind": "zero"}, "8gaussians", evaluation, run_key="abc-s0-r0"
    )
    assert title.splitlines() == [
        "realnvp (preset default, zero padding ×2) on 8gaussians  [abc-s0-r0]",
        "test nats 3.0412 (bound, iwae-100) at step 4500",
    ]
    assert describe_model({"family": "cif", "base": "resflow", "preset": "small"}) == "cif on resflow (preset small)"
    image = run_title({"family": "glow", "preset": "small"}, "digits", {**evaluation, "bpd": 2.5, "quantity": "exact"})
    assert "test bpd 2.5000 (exact" in image


def test_image_tiles_are_separated_by_gaps() -> None:
    tiles = torch.zeros(4, 1, 3, 2)
    canvas = tile_images(tiles, 2, 2, gap=1, fill=1.0)
    assert canvas.shape == (2 * 3 + 1, 2 * 2 + 1, 1)
    assert (canvas[3, :, 0] == 1).all() and (canvas[:, 2, 0] == 1).all()  # the gap row and column
    assert canvas[:3, :2].sum() == 0 and canvas[4:, 3:].sum() == 0  # the tiles themselves


def test_toy_figure_has_axes_ticks_and_a_colour_bar() -> None:
    flow = F.build("realnvp", (2,), preset="small").eval()
    fig = toy_canvas(flow, torch.Generator().manual_seed(0), title="realnvp on moons\ntest nats 2.5")
    density, samples, colour_bar = fig.axes
    assert colour_bar.get_ylabel() == "model density p(x)"
    for ax in (density, samples):
        assert ax.get_xlabel() == "x₁" and ax.get_ylabel() == "x₂" and len(ax.get_xticks()) > 2
    assert fig._suptitle.get_text() == "realnvp on moons\ntest nats 2.5"
