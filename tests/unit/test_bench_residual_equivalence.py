"""Keeps the residual and monotone benchmark suites honest: the compared models are the same, and they run.

- nflab's and normflows' Residual Flows have the same layers and widths (2-128-128-128-2 per block) and, given the
  same weights, compute the same log-density (float64, exact 2×2 log-dets on both sides);
- both sides draw the same number of roulette terms per block and step (the equal-work plan);
- the E5 variants (plain / +Lipschitz / +log-det) are one model with modules swapped: the same map z = f(x) at
  initialisation, no spectral layer in ``plain``, no log-det estimate in the first two;
- the blocks' cached activation derivatives leave the log-det estimate and all its gradients unchanged;
- the monotone suite's counters see one forward and one backward solve per block, with the method asked for;
- the driver runs both suites end to end (tiny sizes). No timing is asserted here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import monotone_step  # noqa: E402
import residual_step  # noqa: E402
import run as bench_run  # noqa: E402

import nflab.flows as nf  # noqa: E402
import nflab.flows.blocks.estimated as estimated  # noqa: E402
from nflab.flows.layers.activations import LipSwish  # noqa: E402
from nflab.flows.layers.lipschitz import SpectralLinear  # noqa: E402
from nflab.flows.logdet import PowerSeriesLogDet  # noqa: E402

needs_normflows = pytest.mark.skipif(not residual_step.normflows_available(), reason="normflows not installed")


def _linear_shapes(module: torch.nn.Module) -> list[tuple[int, int]]:
    return [tuple(m.weight.shape[::-1]) for m in module.modules() if hasattr(m, "weight") and m.weight.dim() == 2]


@needs_normflows
@pytest.mark.parametrize("gradient", list(residual_step.GRADIENTS))
def test_both_residual_flows_have_the_same_blocks_layers_and_parameters(gradient: str) -> None:
    ours = residual_step.build_nflab_resflow(gradient)
    theirs = residual_step.build_normflows_resflow(gradient)
    our_blocks, their_blocks = residual_step.residual_blocks(ours), residual_step.normflows_blocks(theirs)
    assert len(our_blocks) == len(their_blocks) == residual_step.BLOCKS
    for a, b in zip(our_blocks, their_blocks):
        assert _linear_shapes(a.g) == _linear_shapes(b.nnet) == [(2, 128), (128, 128), (128, 128), (128, 2)]
        assert sum(isinstance(m, LipSwish) for m in a.g.modules()) == 4
        assert [type(m).__name__ for m in b.nnet.net].count("Swish") == 4
    # normflows registers geom_p and lamb as parameters of every block (read with .item(), never trained)
    untrained = sum(p.numel() for n, p in theirs.named_parameters() if n.endswith(("geom_p", "lamb")))
    assert untrained == 2 * residual_step.BLOCKS
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters()) - untrained


@needs_normflows
def test_given_the_same_weights_both_residual_flows_compute_the_same_density() -> None:
    ours = residual_step.build_nflab_resflow("basic", blocks=3, width=16).double().eval()
    theirs = residual_step.build_normflows_resflow("basic", blocks=3, width=16).double().eval()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for block, iresblock in zip(residual_step.residual_blocks(ours), residual_step.normflows_blocks(theirs)):
            for mine, peer in zip(block.g, iresblock.nnet.net):
                if isinstance(mine, LipSwish):
                    mine.beta_raw.add_(0.3 * torch.randn((), generator=gen, dtype=torch.float64))
                    peer.beta.copy_(mine.beta_raw.reshape(1))
                else:
                    assert isinstance(mine, SpectralLinear)
                    mine.weight.add_(0.2 * torch.randn(mine.weight.shape, generator=gen, dtype=torch.float64))
                    for name in ("weight", "bias", "u", "v"):
                        getattr(peer, name).copy_(getattr(mine, name))
    x = 2.0 * torch.randn(64, 2, generator=gen, dtype=torch.float64)
    expected = ours.log_prob(x, exact=True).detach()
    assert (expected - nf.flow.standard_normal_log_prob(x)).abs().max() > 1e-2  # the blocks are not the identity
    got = theirs.log_prob(x.clone()).detach()  # eval mode: normflows' brute-force 2×2 log-det
    # normflows rounds its factor max(1, σ̂/c) to float32 (torch.ones(1) against a 0-dim float64 σ̂): ~1e-8 apart
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


@needs_normflows
def test_both_sides_draw_the_same_roulette_terms_in_every_step() -> None:
    batches = residual_step.toy_batches(2, batch=64)
    plan = residual_step.NormflowsRoulettePlan()
    options = {"seed": 5, "blocks": 3, "width": 8}
    with plan.installed():
        ours = residual_step.nflab_contender("basic", batches, **options)
        theirs = residual_step.normflows_contender("basic", batches, plan, **options)
        seen = set()
        for i in range(4):
            planned = residual_step.planned_counts(5, i, 3)
            seen.add(tuple(planned))
            for contender in (ours, theirs):
                before = [p.detach().clone() for p in contender.module.parameters()]
                contender.prepare(i)
                assert torch.isfinite(torch.tensor(contender.step()))
                assert contender.terms() == sum(planned) + 3 * residual_step.N_EXACT_TERMS
                assert any(not torch.equal(b, p) for b, p in zip(before, contender.module.parameters()))
            ours_n = [b.series.last_n_terms for b in residual_step.residual_blocks(ours.module)]
            theirs_n = [int(b.last_n_samples.item()) for b in residual_step.normflows_blocks(theirs.module)]
            assert ours_n == [n + residual_step.N_EXACT_TERMS for n in planned]
            assert theirs_n == planned
        assert len(seen) > 1  # the plan changes from step to step


@pytest.mark.parametrize("family", residual_step.E5_FAMILIES)
def test_e5_variants_are_one_model_with_modules_swapped(family: str) -> None:
    x = residual_step.toy_batches(1, batch=32)[0]
    flows = {v: residual_step.build_e5_variant(family, v, blocks=1) for v in residual_step.E5_VARIANTS}
    plain, lipschitz, full = flows["plain"], flows["+Lipschitz"], flows["+log-det"]
    assert not any(isinstance(m, SpectralLinear) for m in plain.modules())
    assert any(isinstance(m, SpectralLinear) for m in lipschitz.modules())
    for flow in (plain, lipschitz):
        assert not any(isinstance(m, PowerSeriesLogDet) for m in flow.modules())
        assert torch.equal(flow(x)[1], torch.zeros(32))
    assert any(isinstance(m, PowerSeriesLogDet) for m in full.modules())
    z_full, logdet = full(x)
    assert logdet.abs().max() > 0
    for flow in (plain, lipschitz):
        torch.testing.assert_close(flow(x)[0], z_full, atol=1e-5, rtol=1e-5)
    for variant in residual_step.E5_VARIANTS:
        contender = residual_step.e5_contender(family, variant, [x], blocks=1)
        contender.prepare(0)
        assert torch.isfinite(torch.tensor(contender.step())), (family, variant)


@pytest.mark.parametrize(
    ("family", "options"), [("resflow", {}), ("idensenet", {}), ("monotone", {"estimator": "roulette"})]
)
@pytest.mark.parametrize("training", [True, False])
def test_cached_activation_derivatives_change_neither_the_estimate_nor_its_gradients(
    family: str, options: dict, training: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    sizes = {"dense_growth": 8} if family in ("idensenet", "monotone") else {"hidden": (16, 16)}
    flow = nf.build(family, (2,), blocks=(1,), **sizes, **options).double()
    flow.train(training)
    block = residual_step.residual_blocks(flow)[0]
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    x = torch.randn(16, 2, generator=gen, dtype=torch.float64)

    def estimate_and_gradients() -> list[torch.Tensor]:
        block.series.generator = torch.Generator().manual_seed(7)  # the same N and probe on both runs
        xin = x.clone().requires_grad_(True)
        _, logdet = block(xin)
        if not training:
            return [logdet]
        wrt = [xin, *(p for p in block.parameters() if p.requires_grad)]
        grads = torch.autograd.grad(logdet.sum(), wrt, allow_unused=True)  # biases of the last layer: unused
        return [logdet, *(torch.zeros_like(t) if d is None else d for t, d in zip(wrt, grads))]

    cached = estimate_and_gradients()
    assert block.series.last_n_terms >= 3
    monkeypatch.setattr(estimated, "derivative_cached", lambda g: g)  # plain autograd through the activations
    reference = estimate_and_gradients()
    assert cached[0].abs().max() > 1e-3
    for a, b in zip(cached, reference):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


def test_monotone_counters_see_one_solve_per_block_with_the_method_asked_for() -> None:
    flow = monotone_step.build_models(blocks=2)["monotone"]
    x = residual_step.toy_batches(1, batch=32)[0]
    for _, method, memory in monotone_step.VARIANTS:
        forward, backward = monotone_step.count_iterations(flow, [x], method, max_iter=500, memory=memory)
        assert len(forward) == len(backward) == 2
        assert {r.method for r in forward + backward} == {method}
        assert all(r.converged and r.iterations >= 1 for r in forward + backward)
        assert backward[0].tol == pytest.approx(4 * torch.finfo(torch.float32).eps)  # 1e-9 floored in float32
    assert monotone_step.at_bound(flow)[1] == 8


@pytest.mark.slow  # ~10 s: the benchmark driver end to end (make test-slow keeps make test under 15 minutes)
def test_driver_runs_both_suites_at_tiny_sizes(tmp_path: Path) -> None:
    suites = bench_run.discover()
    assert {"residual", "monotone"} <= set(suites)
    out = tmp_path / "RESULTS.md"
    residual = ["--residual-blocks", "1", "--residual-width", "8", "--residual-e5-families", "idensenet"]
    assert (
        bench_run.main(["--suite", "residual", "--quick", *residual, "--residual-e5-blocks", "1", "--out", str(out)])
        == 0
    )
    monotone = ["--monotone-blocks", "1", "--monotone-train-steps", "1", "--monotone-max-iter", "500"]
    assert bench_run.main(["--suite", "monotone", "--quick", *monotone, "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "<!-- suite:residual -->" in text and "<!-- suite:monotone -->" in text
    assert "| idensenet | 1 |" in text
    assert "| float64 | backward | 1e-09 (1.0e-09) |" in text
    if residual_step.normflows_available():
        assert "| basic | normflows |" in text
