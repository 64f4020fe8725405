"""Residual suite (issue 4): one training step of nflab's Residual Flow next to normflows', and the E5 breakdown.

**Part 1 — nflab ``resflow`` vs ``normflows.flows.Residual``, same shape, same estimator.** 2-D, batch 500 of nflab's
checkerboard, float32, CPU, ``--threads`` (default 1). Both models: 10 residual blocks y = x + g(x), g = LipSwish →
SNLinear(2→128) → LipSwish → SNLinear(128→128) → LipSwish → SNLinear(128→128) → LipSwish → SNLinear(128→2), i.e.
normflows' ``LipschitzMLP([2, 128, 128, 128, 2])`` and nflab's ``hidden=(128, 128, 128)`` (4 linear layers; the
last one's initial weight divided by 1000 on both sides), spectral coefficient 0.9, soft normalisation
W/max(1, σ̂/0.9), no ActNorm, standard-normal base. Estimator on both sides: Russian roulette with N ~ geometric(½),
2 exact terms, one Gaussian Hutchinson probe per block; gradient ``basic`` (differentiate the estimate: nflab
``neumann_grad=False, memory_efficient=False``, normflows ``reduce_memory=False``) or ``neumann`` (Neumann gradient
and backward-in-forward: nflab ``neumann_grad=True, memory_efficient=True``, normflows ``reduce_memory=True``).

A step = ``zero_grad``; loss = −mean log p(x); ``backward``; ``Adam(lr=1e-3).step``; then 5 power iterations per
spectral layer — nflab ``hooks.after_optimizer_step`` (the toy default), normflows
``normflows.utils.update_lipschitz(model, 5)``. normflows 1.7.3 does *no* power iteration in its forward pass
(``InducedNormLinear.forward`` calls ``compute_weight(update=False)``), so both sides do the same 5 iterations per
layer per step, after the optimizer step.

Equal work: the number of series terms of every block in every step is the same on both sides. Before step i,
block b's N is drawn from a fresh ``torch.Generator`` seeded with ``seed(i, b)``: nflab gets that generator as its
estimator's ``generator`` (N is the first draw of a forward pass, then the probe), normflows gets the same N through
its sampling function (``normflows.flows.residual.geometric_sample``, replaced for the duration of the run). Probes
are drawn independently on each side. The mean number of terms per step is reported for both; it must agree.
The matrix products of a few more steps of each side are recorded by shape and timed alone (``matmul_cpu_ms``).
The estimate is the same on both sides; how it is computed is not: with D = 2 ≤ N, nflab takes vᵀJ^k from the
explicit 2×2 Jacobian (``nflab.flows.logdet.powers``: 2 one-hot VJPs in one vmapped pass) where normflows takes N
successive VJPs, so nflab does fewer and smaller products (the matmul column shows by how much).

**Part 2 — E5 running-time breakdown** (i-ResNet paper: plain 0.31 s, + spectral norm 0.57 s, + log-det 1.88 s) for
every Lipschitz family at its toy configuration (iresnet and resflow with 10 blocks instead of the published 100:
the cost is linear in the number of blocks). The three variants are built from the shipped model by swapping
modules, never by copying a model's code:

- ``plain``: every ``SpectralLinear`` replaced by an ``nn.Linear`` holding its current normalised weight, every
  log-det estimator by ``NoLogDet`` (the block's map only); step = forward + backward of mean Σ z², Adam step with
  lr 0 (same optimizer work; unconstrained weights must stay contractive for the implicit and monotone solves);
- ``+Lipschitz``: the shipped layers, ``NoLogDet`` estimators; mean Σ z², Adam(1e-3), power-iteration hook;
- ``+log-det``: the shipped model: the full training step of part 1 with the family's own estimator.

Timing: warm-up steps, then rounds; every round runs ``per_round`` steps of every contender (starting contender
rotated per round), each step timed alone with ``time.perf_counter`` (wall) and ``time.process_time`` (CPU of this
process: less sensitive to other processes on a shared machine). Medians and IQR are reported. Untimed between
steps: a fresh copy of the batch (normflows sets ``requires_grad`` on its input) and the RNG plan.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib.util
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from benchlib import Suite, SuiteResult, Table
from torch import Tensor, nn

import nflab.flows as nf
from nflab.flows import hooks
from nflab.flows.analysis.runtime import (  # noqa: F401 (re-exported: the other suites and tests use them here)
    E5_VARIANTS,
    PUBLISHED_E5,
    Contender,
    Measurement,
    NoLogDet,
    build_variant,
    measure_interleaved,
    plain_linear,
    squared_norm,
    training_step,
    variant_contender,
    without_logdet,
    without_spectral_norm,
)
from nflab.flows.blocks import EstimatedLogDetBlock

DIM = 2
BATCH = 500
BLOCKS = 10
WIDTH = 128
N_HIDDEN = 3  # hidden layers of width WIDTH: LipschitzMLP([2, 128, 128, 128, 2]), 4 linear layers
COEFF = 0.9
POWER_ITERATIONS = 5
GEOM_P = 0.5
N_EXACT_TERMS = 2
LR = 1e-3
GRADIENTS: dict[str, tuple[bool, bool]] = {"basic": (False, False), "neumann": (True, True)}  # (neumann, mem-eff)
E5_FAMILIES: tuple[str, ...] = ("iresnet", "resflow", "idensenet", "monotone", "implicit")
E5_OVERRIDES: dict[str, dict[str, Any]] = {"iresnet": {"blocks": (BLOCKS,)}, "resflow": {"blocks": (BLOCKS,)}}


# the timing harness (Contender, Measurement, measure_interleaved, training_step) is nflab.flows.analysis.runtime's


def toy_batches(n_batches: int, *, seed: int = 0, batch: int = BATCH) -> list[Tensor]:
    """``n_batches`` float32 checkerboard batches from nflab's generator (drawn once, before any timing)."""
    g = torch.Generator().manual_seed(seed)
    return [nf.data.sample_toy("checkerboard", batch, generator=g) for _ in range(n_batches)]


# ------------------------------------------------------------------------------------------- equal-work roulette
def block_seed(seed: int, step: int, block: int) -> int:
    """The seed of block ``block``'s N in step ``step``."""
    return (seed * 1_000_003 + step) * 1_009 + block


def planned_counts(seed: int, step: int, n_blocks: int, geom_p: float = GEOM_P) -> list[int]:
    """N per block for step ``step``: the first geometric draw of a generator seeded with ``block_seed``.

    This is exactly what nflab's estimator draws first in a forward pass from a generator seeded the same way.
    """
    counts = []
    for b in range(n_blocks):
        gen = torch.Generator().manual_seed(block_seed(seed, step, b))
        counts.append(int(torch.empty((), dtype=torch.float64).geometric_(geom_p, generator=gen).item()))
    return counts


class NormflowsRoulettePlan:
    """Replaces normflows' geometric sampler so that its blocks draw the planned N, in data → latent order."""

    def __init__(self) -> None:
        self.queue: list[int] = []

    def load(self, counts: Sequence[int]) -> None:
        self.queue = list(counts)

    def sample(self, p: float, n_samples: int) -> Any:
        import numpy as np

        if not self.queue:
            raise RuntimeError("normflows drew more roulette counts than planned for this step")
        return np.array([self.queue.pop(0) for _ in range(n_samples)])

    @contextlib.contextmanager
    def installed(self) -> Iterator[NormflowsRoulettePlan]:
        import normflows.flows.residual as residual

        original = residual.geometric_sample
        residual.geometric_sample = self.sample
        try:
            yield self
        finally:
            residual.geometric_sample = original


def normflows_available() -> bool:
    return importlib.util.find_spec("normflows") is not None


# ------------------------------------------------------------------------------------------------------ part 1
def build_nflab_resflow(gradient: str, *, blocks: int = BLOCKS, width: int = WIDTH, seed: int = 0) -> nf.Flow:
    """nflab's Residual Flow of the comparison (see module docstring); every block gets its own RNG generator."""
    neumann, memory_efficient = GRADIENTS[gradient]
    torch.manual_seed(seed)
    flow = nf.build(
        "resflow", (DIM,), blocks=(blocks,), hidden=(width,) * N_HIDDEN, activation="lipswish", coeff=COEFF,
        power_iterations=POWER_ITERATIONS, estimator="roulette", dist="geometric", geom_p=GEOM_P,
        n_exact_terms=N_EXACT_TERMS, probe="gaussian", neumann_grad=neumann, memory_efficient=memory_efficient,
        actnorm=False,
    )  # fmt: skip
    for block in residual_blocks(flow):
        block.series.generator = torch.Generator()
    return flow.float().train()


def build_normflows_resflow(gradient: str, *, blocks: int = BLOCKS, width: int = WIDTH, seed: int = 0) -> nn.Module:
    """normflows' Residual Flow of the comparison: ``Residual(LipschitzMLP([2, w, w, w, 2]))`` × blocks."""
    import normflows

    neumann, _ = GRADIENTS[gradient]
    torch.manual_seed(seed)
    data_to_latent = [
        normflows.flows.Residual(
            normflows.nets.LipschitzMLP(
                [DIM, *(width,) * N_HIDDEN, DIM],
                lipschitz_const=COEFF,
                max_lipschitz_iter=POWER_ITERATIONS,
                init_zeros=True,
            ),
            reduce_memory=neumann,  # Neumann gradient + backward-in-forward, or neither
            geom_p=GEOM_P,
            n_exact_terms=N_EXACT_TERMS,
            n_dist="geometric",
        )
        for _ in range(blocks)
    ]
    # normflows lists flows latent → data and evaluates log_prob from the last one: block 0 sees the data first.
    model = normflows.NormalizingFlow(
        normflows.distributions.DiagGaussian(DIM, trainable=False), list(reversed(data_to_latent))
    )
    return model.float().train()


def residual_blocks(flow: nn.Module) -> list[EstimatedLogDetBlock]:
    return [m for m in flow.modules() if isinstance(m, EstimatedLogDetBlock)]


def normflows_blocks(model: nn.Module) -> list[nn.Module]:
    """normflows' iResBlocks in data → latent order."""
    return [flow.iresblock for flow in reversed(list(model.flows))]


def nflab_contender(gradient: str, batches: Sequence[Tensor], *, seed: int, blocks: int, width: int) -> Contender:
    flow = build_nflab_resflow(gradient, blocks=blocks, width=width)
    series = [block.series for block in residual_blocks(flow)]
    current: list[Tensor] = [batches[0]]

    def prepare(i: int) -> None:
        current[0] = batches[i % len(batches)].clone()
        for b, estimator in enumerate(series):
            estimator.generator.manual_seed(block_seed(seed, i, b))

    step = training_step(flow, flow.log_prob, lambda: current[0], after_step=lambda: hooks.after_optimizer_step(flow))
    return Contender(f"nflab {gradient}", flow, prepare, step, lambda: float(sum(s.last_n_terms for s in series)))


def normflows_contender(
    gradient: str, batches: Sequence[Tensor], plan: NormflowsRoulettePlan, *, seed: int, blocks: int, width: int
) -> Contender:
    import normflows

    model = build_normflows_resflow(gradient, blocks=blocks, width=width)
    iresblocks = normflows_blocks(model)
    current: list[Tensor] = [batches[0]]

    def prepare(i: int) -> None:
        current[0] = batches[i % len(batches)].clone()  # normflows sets requires_grad on its input
        plan.load(planned_counts(seed, i, len(iresblocks)))

    def terms() -> float:
        return float(sum(int(b.last_n_samples.max()) + b.n_exact_terms for b in iresblocks))

    step = training_step(
        model,
        model.log_prob,
        lambda: current[0],
        after_step=lambda: normflows.utils.update_lipschitz(model, POWER_ITERATIONS),
    )
    return Contender(f"normflows {gradient}", model, prepare, step, terms)


def matmul_cpu_ms(contender: Contender, steps: Sequence[int], *, repeats: int = 20) -> float:
    """CPU ms per step spent in matrix products (mm, addmm, bmm, mv, addmv) by ``contender``'s steps ``steps``.

    The products are recorded by shape and dtype (a dispatch mode, below autograd), then each shape is timed alone on
    random operands: a lower bound of the step that no implementation of the same algorithm can go under.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    aten = torch.ops.aten
    products = {aten.mm.default, aten.addmm.default, aten.bmm.default, aten.mv.default, aten.addmv.default}
    calls: collections.Counter[tuple[Any, tuple[tuple[tuple[int, ...], torch.dtype], ...]]] = collections.Counter()

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            if func in products:
                calls[(func, tuple((tuple(a.shape), a.dtype) for a in args if isinstance(a, Tensor)))] += 1
            return func(*args, **(kwargs or {}))

    for i in steps:
        contender.prepare(i)
        with Recorder():
            contender.step()
    total = 0.0
    for (func, operands), count in calls.items():
        tensors = [torch.randn(shape, dtype=dtype) for shape, dtype in operands]
        func(*tensors)
        start = time.process_time()
        for _ in range(repeats):
            func(*tensors)
        total += (time.process_time() - start) / repeats * count
    return total / len(steps) * 1e3


def _fmt(value: float, digits: int = 1) -> str:
    return f"{value:.{digits}f}"


def run_part1(args: argparse.Namespace, batches: Sequence[Tensor], timing: dict[str, int]) -> tuple[Table, Table]:
    plan = NormflowsRoulettePlan()
    detail = Table(
        "Residual Flow step, nflab and normflows side by side (equal N per block and step)",
        ["gradient", "library", "params", "ms/step", "IQR ms", "CPU ms/step", "terms/step", "final loss"],
    )
    summary = Table(
        "nflab ÷ normflows per training step (goal of issue 4: ≤ 0.50)",
        ["gradient", "nflab ms", "normflows ms", "nflab ÷ normflows (wall)", "nflab ÷ normflows (CPU)",
         "matmul CPU ms/step nflab, normflows", "matmul ÷ normflows CPU"],
    )  # fmt: skip
    options = {"seed": args.residual_seed, "blocks": args.residual_blocks, "width": args.residual_width}
    with plan.installed():
        for gradient in GRADIENTS:
            contenders = [nflab_contender(gradient, batches, **options)]
            contenders.append(normflows_contender(gradient, batches, plan, **options))
            ours, theirs = measure_interleaved(contenders, **timing)
            for m in (ours, theirs):
                detail.rows.append(
                    [
                        gradient,
                        m.contender.label.split()[0],
                        f"{m.contender.n_params:,}",
                        _fmt(m.median_ms),
                        _fmt(m.iqr_ms),
                        _fmt(m.cpu_ms),
                        _fmt(m.mean_terms, 2),
                        f"{m.last_loss:.3f}",
                    ]
                )
            wall, cpu = ours.median_ms / theirs.median_ms, ours.cpu_ms / theirs.cpu_ms
            n_after = 1 if args.quick else args.residual_matmul_steps
            after = range(10_000, 10_000 + n_after)  # plan indices past the timed steps
            floors = [matmul_cpu_ms(c, after) for c in contenders]
            summary.rows.append(
                [
                    gradient,
                    _fmt(ours.median_ms),
                    _fmt(theirs.median_ms),
                    f"**{wall:.2f}**" if wall > 0.5 else f"{wall:.2f}",
                    f"**{cpu:.2f}**" if cpu > 0.5 else f"{cpu:.2f}",
                    f"{_fmt(floors[0])}, {_fmt(floors[1])}",
                    f"{floors[0] / theirs.cpu_ms:.2f}",
                ]
            )
    return summary, detail


# ------------------------------------------------------------------------------------------------------ part 2
def build_e5_variant(family: str, variant: str, *, blocks: int | None = None, seed: int = 0) -> nf.Flow:
    """The toy model of ``family`` as ``plain``, ``+Lipschitz`` or ``+log-det`` (``runtime.build_variant``), with this
    suite's block counts."""
    options = dict(E5_OVERRIDES.get(family, {}))
    if blocks is not None:
        options["blocks"] = (blocks,)
    return build_variant(family, variant, seed=seed, **options)


def e5_contender(family: str, variant: str, batches: Sequence[Tensor], *, blocks: int | None) -> Contender:
    return variant_contender(build_e5_variant(family, variant, blocks=blocks), family, variant, batches)


def run_part2(args: argparse.Namespace, batches: Sequence[Tensor], timing: dict[str, int]) -> Table:
    families = [f for f in str(args.residual_e5_families).split(",") if f]
    for family in families:
        if family not in E5_FAMILIES:
            raise ValueError(f"--residual-e5-families: {family!r} is not one of {', '.join(E5_FAMILIES)}")
    blocks = args.residual_e5_blocks
    contenders = [e5_contender(f, v, batches, blocks=blocks) for f in families for v in E5_VARIANTS]
    results = iter(measure_interleaved(contenders, **timing))
    table = Table(
        "E5 breakdown: ms per training step (median wall; CPU in brackets) and ratios to plain",
        ["family", "blocks", "params", "plain", "+Lipschitz", "+log-det", "+Lipschitz ÷ plain", "+log-det ÷ plain"],
    )
    for family in families:
        plain, lipschitz, logdet = (next(results) for _ in E5_VARIANTS)
        n_blocks = sum(isinstance(m, EstimatedLogDetBlock) for m in logdet.contender.module.modules())
        table.rows.append(
            [
                family,
                str(n_blocks),
                f"{logdet.contender.n_params:,}",
                *(f"{_fmt(m.median_ms)} ({_fmt(m.cpu_ms)})" for m in (plain, lipschitz, logdet)),
                f"{lipschitz.median_ms / plain.median_ms:.2f}",
                f"{logdet.median_ms / plain.median_ms:.2f}",
            ]
        )
    return table


# ------------------------------------------------------------------------------------------------------- suite
def run_residual(args: argparse.Namespace) -> SuiteResult:
    torch.set_num_threads(args.threads)
    timing = {"warmup": args.residual_warmup, "rounds": args.residual_rounds, "per_round": args.residual_per_round}
    e5_timing = {"warmup": args.residual_warmup, "rounds": args.residual_e5_rounds, "per_round": 1}
    if args.quick:
        timing = {"warmup": 1, "rounds": 2, "per_round": 1}
        e5_timing = {"warmup": 1, "rounds": 2, "per_round": 1}
    batches = toy_batches(16)
    tables: list[Table] = []
    notes: list[str] = []
    if normflows_available():
        tables += run_part1(args, batches, timing)
    else:
        notes.append("normflows is not installed (the `bench` extra): part 1 skipped.")
    tables.append(run_part2(args, batches, e5_timing))
    width, blocks = args.residual_width, args.residual_blocks
    settings = {
        "part 1 model": f"{blocks} residual blocks, g = LipSwish-SNLinear MLP [2, {width}, {width}, {width}, 2] "
        f"(4 linear layers), c = {COEFF}, no ActNorm; nflab `resflow` and normflows `Residual(LipschitzMLP)`",
        "part 1 estimator": f"Russian roulette, N ~ geometric({GEOM_P}), {N_EXACT_TERMS} exact terms, 1 Gaussian "
        "probe; the same N per block and step on both sides; gradient basic or Neumann + backward-in-forward",
        "step": f"Adam(lr={LR}) on −mean log p(x), batch {BATCH}×{DIM} checkerboard, float32, CPU; then "
        f"{POWER_ITERATIONS} power iterations per spectral layer (nflab hook / normflows update_lipschitz)",
        "timing": f"part 1: {timing['warmup']} warm-up steps, {timing['rounds']} rounds × {timing['per_round']} "
        f"steps per model; part 2: {e5_timing['rounds']} rounds × 1 step per variant; models interleaved, "
        "starting model rotated per round",
    }
    notes += [
        "Both libraries run in the same process, interleaved round by round, so load from other processes on a "
        "shared machine falls on them alike; `CPU ms` (process time) is the less load-sensitive figure.",
        "`terms/step` is the number of power-series terms summed over the blocks, averaged over the timed steps: "
        "equal on both sides by construction (equal work).",
        "`matmul CPU ms/step`: the step's matrix products (recorded by shape over a few more steps, each shape "
        "timed alone). The estimate is the same; nflab computes vᵀJ^k from the explicit 2×2 Jacobian (D = 2 ≤ N: "
        "2 one-hot VJPs in one vmapped pass) where normflows takes N successive VJPs, so nflab's products are fewer. "
        "`matmul ÷ normflows CPU` is nflab's matrix-product time over normflows' whole step: the rest of nflab's "
        "ratio is elementwise work and autograd overhead.",
        f"E5 for reference: {PUBLISHED_E5}. Here: toy 2-D models, batch {BATCH}, the families' own estimators "
        "(iresnet truncated 5 terms, resflow and idensenet roulette, monotone and implicit exact 2×2); "
        "`plain` keeps the architecture (η concatenation, activations, solves) with ordinary `nn.Linear` layers.",
        "Timings are never asserted in tests; the equivalence of the compared models is checked by "
        "`tests/unit/test_bench_residual_equivalence.py`.",
    ]
    return SuiteResult(settings=settings, tables=tables, notes=notes)


def add_residual_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--residual-rounds", type=int, default=30, help="interleaved rounds (part 1)")
    group.add_argument("--residual-per-round", type=int, default=3, help="timed steps per model and round (part 1)")
    group.add_argument("--residual-warmup", type=int, default=5, help="untimed warm-up steps per model")
    group.add_argument("--residual-e5-rounds", type=int, default=20, help="interleaved rounds of the E5 breakdown")
    group.add_argument("--residual-seed", type=int, default=0, help="seed of the roulette plan")
    group.add_argument("--residual-blocks", type=int, default=BLOCKS, help="residual blocks in part 1")
    group.add_argument("--residual-width", type=int, default=WIDTH, help="hidden width of the part-1 MLP")
    group.add_argument("--residual-e5-families", default=",".join(E5_FAMILIES), help="comma-separated families (E5)")
    group.add_argument("--residual-e5-blocks", type=int, default=None, help="blocks of every E5 model (default: toy)")
    group.add_argument("--residual-matmul-steps", type=int, default=5, help="steps whose matrix products are timed")


SUITE = Suite(
    name="residual",
    title="Lipschitz families: Residual Flow step vs normflows, E5 running-time breakdown",
    run=run_residual,
    add_arguments=add_residual_arguments,
    packages=("nflab", "normflows"),
)
