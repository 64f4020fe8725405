"""Keeps the flows benchmark from rotting: its models build, are the same size across libraries, and train.

Parameter counts of each peer must lie within ``flows_step.PARAM_TOLERANCE`` (5 %) of nflab's: nflab's coupling
conditioners read and write the full masked vector (+1.5 % for NICE, +2.3 % for RealNVP at H = 128,
less at 512); MAF matches exactly. No timing is asserted here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import flows_step  # noqa: E402
import run as bench_run  # noqa: E402

WIDTH = 32  # small and fast, for the steps (at H = 32 the conditioner overhead above is 4–8 %)
PEERS = [lib for lib in flows_step.available_libraries() if lib != "nflab"]


@pytest.mark.parametrize("family", flows_step.FAMILIES)
@pytest.mark.parametrize("width", [128, 512])  # the widths the benchmark reports
def test_peers_have_the_same_size_as_nflab(family: str, width: int) -> None:
    if not PEERS:
        pytest.skip("no peer library installed (the 'bench' extra)")
    ours = flows_step.build_model("nflab", family, width).n_params
    for lib in PEERS:
        theirs = flows_step.build_model(lib, family, width).n_params
        assert abs(theirs / ours - 1) <= flows_step.PARAM_TOLERANCE, (lib, family, width, theirs, ours)


@pytest.mark.parametrize("library", flows_step.available_libraries())
@pytest.mark.parametrize("family", flows_step.FAMILIES)
def test_one_training_step_runs(library: str, family: str) -> None:
    model = flows_step.build_model(library, family, WIDTH)
    (x,) = flows_step.make_batches(1)
    assert x.shape == (flows_step.BATCH, flows_step.DIM) and x.dtype == torch.float32
    before = [p.detach().clone() for p in model.module.parameters()]
    loss = flows_step.make_step(model)(x)
    assert torch.isfinite(loss), (library, family, loss)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.module.parameters())), "Adam changed nothing"


def test_log_prob_is_one_value_per_sample() -> None:
    (x,) = flows_step.make_batches(1)
    for model in flows_step.iter_models(WIDTH):
        assert model.log_prob(x[:7]).shape == (7,), (model.library, model.family)


def test_driver_discovers_the_flows_suite_and_keeps_the_header(tmp_path: Path) -> None:
    suites = bench_run.discover()
    assert "flows" in suites and "benchlib" not in suites
    out = tmp_path / "RESULTS.md"
    out.write_text(
        "# my header\n\nhand-written\n\n" + bench_run.GENERATED + "\n\n<!-- suite:other -->\nx\n"
        "<!-- /suite:other -->\n",
        encoding="utf-8",
    )
    args = ["--suite", "flows", "--quick", "--flows-widths", "8", "--out", str(out)]
    assert bench_run.main(args) == 0
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# my header\n\nhand-written\n")
    assert "<!-- suite:other -->" in text and "<!-- suite:flows -->" in text
    assert "| nice | 8 | nflab |" in text


def test_results_keep_hand_written_sections_around_the_generated_ones() -> None:
    """A suite's new section replaces its old one in place; hand-written text before, between and after stays."""
    old = (
        "# h\n\n" + bench_run.GENERATED + "\n\n<!-- suite:a -->\nold a\n<!-- /suite:a -->\n\n## notes on a\n\n"
        "<!-- suite:b -->\nold b\n<!-- /suite:b -->\n\n## hand-written after\n\ntext\n"
    )
    new = bench_run.merge(old, {"a": "<!-- suite:a -->\nnew a\n<!-- /suite:a -->\n",
                                "c": "<!-- suite:c -->\nnew c\n<!-- /suite:c -->\n"}, ["a", "b", "c"])  # fmt: skip
    assert "old a" not in new and "new a" in new and "old b" in new and "new c" in new
    assert new.index("new a") < new.index("## notes on a") < new.index("old b") < new.index("## hand-written after")
    assert new.index("text") < new.index("new c")
