"""Monotone suite (issue 5): the toy Monotone Flow's training step against i-DenseNet's, and its solvers' iterations.

**Part 1 — step time.** ``build("monotone", (2,))`` (the paper's toy model: 10 monotone blocks, dense CPila branches
of depth 3 and growth 16, exact 2×2 log-det, Anderson-accelerated forward solve to 1e-6 and implicit backward to
1e-9) against ``build("idensenet", (2,), estimator="exact")`` (the same dense branches with CLipSwish in residual
blocks, the same exact 2×2 log-det, no solve). A step = ``zero_grad``; loss = −mean log p(x) on 500 checkerboard
points (float32, CPU); ``backward``; ``Adam(lr=1e-3).step``; ``hooks.after_optimizer_step`` (5 power iterations per
spectral layer, the concatenation schedule). Both models are timed interleaved, round by round (``residual_step``'s
harness), so that load from other processes falls on both alike. Goal of issue 5: monotone ≤ 2 × i-DenseNet.

**Part 2 — solver iterations, Anderson vs plain.** The toy monotone model is first trained for
``--monotone-train-steps`` steps (default 300) with the step above, so that its weights are realistic (its spectral
layers sit at their bound c = 0.9, yet Lip(g) at the data stays near 0.2), and a ``near bound`` copy is made with
every branch pushed to Lip(g) ≈ its bound 0.85 (``stressed``). Then, for each dtype, a copy runs forward + backward
of the training loss on a few batches with every block's solver set to ``plain`` and to ``anderson`` at the
published tolerances (forward 1e-6, backward 1e-9; the iteration caps raised to ``--monotone-max-iter`` for both so
that the slower method is counted, not cut off; a solve that still fails is reported, not hidden). Forward
iterations come from each block's ``solver_reports["forward"]``; backward iterations from the report of every
implicit-gradient solve, recorded by wrapping the fixed-point call of ``nflab.flows.solvers.implicit`` for the
duration of the measurement. In float32 a tolerance below 4 machine epsilons is raised to that floor (4.8e-7), which
the table shows as the effective tolerance.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
from collections.abc import Iterator, Sequence

import torch
from benchlib import Suite, SuiteResult, Table
from residual_step import BATCH, DIM, LR, Contender, measure_interleaved, toy_batches, training_step
from torch import Tensor

import nflab.flows as nf
from nflab.flows import hooks
from nflab.flows.blocks import MonotoneBlock
from nflab.flows.layers.lipschitz import lipschitz_layers
from nflab.flows.solvers import ConvergenceError, SolverConfig, SolverReport

# (label, method, Anderson memory): the reference's secant step (memory 1) and nflab's default memory
VARIANTS: tuple[tuple[str, str, int], ...] = (
    ("plain", "plain", 1),
    ("Anderson(1)", "anderson", 1),
    ("Anderson", "anderson", SolverConfig().anderson_memory),
)
FORWARD_TOL = 1e-6
BACKWARD_TOL = 1e-9
GOAL_RATIO = 2.0
GOAL_ITERATIONS = 3.0


def build_models(*, blocks: int | None = None, seed: int = 0) -> dict[str, nf.Flow]:
    """The toy monotone model and the toy i-DenseNet with the exact log-det (``blocks`` overrides both)."""
    options = {} if blocks is None else {"blocks": (blocks,)}
    torch.manual_seed(seed)
    monotone = nf.build("monotone", (DIM,), **options)
    torch.manual_seed(seed)
    idensenet = nf.build("idensenet", (DIM,), estimator="exact", **options)
    return {"monotone": monotone.float().train(), "idensenet": idensenet.float().train()}


def flow_contender(label: str, flow: nf.Flow, batches: Sequence[Tensor]) -> Contender:
    current: list[Tensor] = [batches[0]]

    def prepare(i: int) -> None:
        current[0] = batches[i % len(batches)]

    def power_iterations() -> None:
        hooks.after_optimizer_step(flow)

    def solver_iterations() -> float:
        return hooks.training_metrics(flow).get("solver_iterations_forward", 0.0)

    step = training_step(flow, flow.log_prob, lambda: current[0], after_step=power_iterations)
    return Contender(label, flow, prepare, step, solver_iterations)


def monotone_blocks(flow: nf.Flow) -> list[MonotoneBlock]:
    return [m for m in flow.modules() if isinstance(m, MonotoneBlock)]


@contextlib.contextmanager
def recording_backward_solves() -> Iterator[list[SolverReport]]:
    """Collect the report of every implicit-gradient (backward) solve while the block is active."""
    import nflab.flows.solvers.implicit as implicit

    original = implicit.fixed_point
    reports: list[SolverReport] = []

    def recording(*args: object, **kwargs: object) -> tuple[Tensor, SolverReport]:
        out, report = original(*args, **kwargs)  # type: ignore[arg-type]
        reports.append(report)
        return out, report

    implicit.fixed_point = recording
    try:
        yield reports
    finally:
        implicit.fixed_point = original


def set_solver(flow: nf.Flow, method: str, *, max_iter: int, memory: int) -> None:
    """Every monotone block solves with ``method`` at the published tolerances and the cap ``max_iter``."""
    config = SolverConfig(
        method=method,
        tol=FORWARD_TOL,
        max_iter=max_iter,
        backward_tol=BACKWARD_TOL,
        backward_max_iter=max_iter,
        anderson_memory=memory,
        backward_direct=False,  # count the backward's fixed-point iterations (training uses the direct solve)
    ).validate()
    for block in monotone_blocks(flow):
        block.solver_config = config


def train(flow: nf.Flow, batches: Sequence[Tensor], steps: int) -> float:
    """``steps`` training steps (the suite's step, cycling through ``batches``); returns the last loss."""
    current: list[Tensor] = [batches[0]]
    step = training_step(flow, flow.log_prob, lambda: current[0], after_step=lambda: hooks.after_optimizer_step(flow))
    loss = float("nan")
    for i in range(steps):
        current[0] = batches[i % len(batches)]
        loss = step()
    return loss


def count_iterations(
    flow: nf.Flow, batches: Sequence[Tensor], method: str, *, max_iter: int, memory: int = 1
) -> tuple[list[SolverReport], list[SolverReport]]:
    """(forward reports, backward reports) of every block-solve over forward + backward of the loss on ``batches``."""
    set_solver(flow, method, max_iter=max_iter, memory=memory)
    forward: list[SolverReport] = []
    backward: list[SolverReport] = []
    for x in batches:
        flow.zero_grad(set_to_none=True)
        with recording_backward_solves() as recorded:
            loss = -flow.log_prob(x).mean()
            loss.backward()
        forward += [block.solver_reports["forward"] for block in monotone_blocks(flow)]
        backward += recorded
    return forward, backward


def _mean(reports: Sequence[SolverReport]) -> float:
    return sum(r.iterations for r in reports) / len(reports)


def at_bound(flow: nf.Flow, relative: float = 0.99) -> tuple[int, int]:
    """(spectral layers with σ̂ ≥ relative·c, all spectral layers)."""
    layers = lipschitz_layers(flow)
    return sum(layer.estimated_norm() >= relative * layer.coeff for layer in layers), len(layers)


def run_part1(args: argparse.Namespace, batches: Sequence[Tensor], timing: dict[str, int]) -> Table:
    models = build_models(blocks=args.monotone_blocks)
    contenders = [flow_contender(name, flow, batches) for name, flow in models.items()]
    monotone, idensenet = measure_interleaved(contenders, **timing)
    table = Table(
        "Training step: toy Monotone Flow vs toy i-DenseNet with the exact log-det (goal: ratio ≤ 2.0)",
        ["model", "params", "ms/step", "IQR ms", "CPU ms/step", "forward solver its/step", "÷ i-DenseNet (wall)"],
    )
    for m in (monotone, idensenet):
        ratio = m.median_ms / idensenet.median_ms
        table.rows.append(
            [
                m.contender.label,
                f"{m.contender.n_params:,}",
                f"{m.median_ms:.1f}",
                f"{m.iqr_ms:.1f}",
                f"{m.cpu_ms:.1f}",
                f"{m.mean_terms:.1f}",
                f"**{ratio:.2f}**" if ratio > GOAL_RATIO else f"{ratio:.2f}",
            ]
        )
    cpu_ratio = monotone.cpu_ms / idensenet.cpu_ms
    table.rows.append(["monotone ÷ i-DenseNet (CPU)", "", "", "", f"{cpu_ratio:.2f}", "", ""])
    return table


def local_lipschitz(flow: nf.Flow, x: Tensor) -> list[float]:
    """Per block, max over the batch of ‖J_g(w)‖₂ at the w its forward solve finds (exact 2×2 Jacobians)."""
    from nflab.flows.logdet import batch_jacobian

    out = []
    h = x
    for block in monotone_blocks(flow):
        with torch.no_grad():
            y, _ = block(h)
        w = ((h + y) / math.sqrt(2.0)).requires_grad_(True)  # y = √2·w − x
        with torch.enable_grad():
            jac = batch_jacobian(block.g(w), w, create_graph=False)
        out.append(float(torch.linalg.matrix_norm(jac, ord=2).max()))
        h = y
    return out


def stressed(flow: nf.Flow, *, seed: int, scale: float = 100.0) -> nf.Flow:
    """A copy of ``flow`` whose branches have Lip(g) close to their bound (c·lip_coeff³ ≈ 0.85).

    Per block: the concatenation weights favour the input (K₁ = 6, K₂ = −6: η₁ ≈ 0.98), and the last spectral
    layer's columns that read the input are set to ``scale`` × a random orthogonal 2×2 matrix, so that after
    normalisation (σ̂ → c) g ≈ c·η₁³·R·w plus the trained, now small, nonlinear part.
    """
    from nflab.flows.layers.dense import LipschitzDenseLayer
    from nflab.flows.layers.lipschitz import SpectralLinear

    copy_ = copy.deepcopy(flow)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in monotone_blocks(copy_):
            for layer in block.g.modules():
                if isinstance(layer, LipschitzDenseLayer):
                    layer.k1.fill_(6.0)
                    layer.k2.fill_(-6.0)
            last = [m for m in block.g.modules() if isinstance(m, SpectralLinear)][-1]
            d = last.out_features
            rotation, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
            last.weight[:, :d] = scale * last.weight.abs().max() * rotation.to(last.weight.dtype)
    hooks.before_evaluation(copy_)  # σ̂ of the changed layers
    return copy_


def run_part2(
    args: argparse.Namespace, batches: Sequence[Tensor], *, train_steps: int, count_batches: int
) -> tuple[Table, list[str]]:
    trained = build_models(blocks=args.monotone_blocks, seed=args.monotone_seed)["monotone"]
    loss = train(trained, batches, train_steps)
    hooks.before_evaluation(trained)  # converge σ̂ on the trained weights, as an evaluation would
    n_bound, n_layers = at_bound(trained)
    measure = toy_batches(count_batches, seed=args.monotone_seed + 1)
    regimes = {"trained": trained, "near bound": stressed(trained, seed=args.monotone_seed)}
    table = Table(
        "Fixed-point iterations per block and solve, plain vs Anderson, at the published tolerances "
        f"(goal: plain ÷ Anderson ≥ {GOAL_ITERATIONS:.0f})",
        ["weights", "Lip(g) at the data", "dtype", "solve", "tol (effective)",
         *(f"{label} its" for label, _, _ in VARIANTS), "plain ÷ Anderson(1)", "plain ÷ Anderson", "Anderson max its"],
    )  # fmt: skip
    failures: list[str] = []
    for regime, model in regimes.items():
        lipschitz = local_lipschitz(copy.deepcopy(model).double(), measure[0].double())
        lip_text = f"{sum(lipschitz) / len(lipschitz):.2f} (max {max(lipschitz):.2f})"
        for dtype in (torch.float32, torch.float64):
            name = str(dtype).removeprefix("torch.")
            xs = [x.to(dtype) for x in measure]
            counts: dict[str, tuple[list[SolverReport], list[SolverReport]] | None] = {}
            for label, method, memory in VARIANTS:
                try:
                    counts[label] = count_iterations(
                        copy.deepcopy(model).to(dtype), xs, method, max_iter=args.monotone_max_iter, memory=memory
                    )
                except ConvergenceError as error:
                    counts[label] = None
                    failures.append(f"`{regime}`, {name}, {label}: {error}")
            for index, solve in enumerate(("forward", "backward")):
                its = {label: None if c is None else c[index] for label, c in counts.items()}
                plain, anderson = its["plain"], its["Anderson"]
                tol = anderson[0].tol if anderson and anderson[0].tol is not None else float("nan")
                ratios = []
                for label in ("Anderson(1)", "Anderson"):
                    ratio = _mean(plain) / _mean(its[label]) if plain and its[label] else None
                    ratios.append(
                        "—" if ratio is None else f"**{ratio:.2f}**" if ratio < GOAL_ITERATIONS else f"{ratio:.2f}"
                    )
                table.rows.append(
                    [
                        regime,
                        lip_text,
                        name,
                        solve,
                        f"{FORWARD_TOL if solve == 'forward' else BACKWARD_TOL:.0e} ({tol:.1e})",
                        *(f"{_mean(its[label]):.1f}" if its[label] else "fails" for label, _, _ in VARIANTS),
                        *ratios,
                        str(max(r.iterations for r in anderson)) if anderson else "—",
                    ]
                )
    notes = [
        f"`trained`: the toy monotone model after {train_steps} training steps (Adam {LR}, batch {BATCH} "
        f"checkerboard, final training loss {loss:.3f}); {n_bound} of {n_layers} spectral layers at their bound "
        "(σ̂ ≥ 0.99·c) after 200 power iterations. `near bound`: the same weights with every branch pushed to "
        "Lip(g) ≈ its bound c·lip_coeff³ ≈ 0.85 (`monotone_step.stressed`: input-favouring concatenation, a random "
        "orthogonal input map in the last layer). `Lip(g) at the data`: mean over blocks of the largest ‖J_g(w)‖₂ "
        f"over a batch. Iterations averaged over {count_batches} batches × {len(monotone_blocks(trained))} blocks; "
        f"caps raised to {args.monotone_max_iter} for both methods (published: 2000 forward, 100 backward).",
        *(f"Solver failure — {failure}" for failure in failures),
    ]
    return table, notes


def run_monotone(args: argparse.Namespace) -> SuiteResult:
    torch.set_num_threads(args.threads)
    timing = {"warmup": args.monotone_warmup, "rounds": args.monotone_rounds, "per_round": args.monotone_per_round}
    train_steps, count_batches = args.monotone_train_steps, args.monotone_count_batches
    if args.quick:
        timing = {"warmup": 1, "rounds": 2, "per_round": 1}
        train_steps, count_batches = min(train_steps, 5), min(count_batches, 1)
    batches = toy_batches(16)
    step_table = run_part1(args, batches, timing)
    iteration_table, notes = run_part2(args, batches, train_steps=train_steps, count_batches=count_batches)
    settings = {
        "models": "build('monotone', (2,)) vs build('idensenet', (2,), estimator='exact'): 10 blocks, dense branches "
        "(depth 3, growth 16), c = 0.9, exact 2×2 log-det",
        "step": f"Adam(lr={LR}) on −mean log p(x), batch {BATCH}×{DIM} checkerboard, float32, CPU, then "
        "hooks.after_optimizer_step",
        "timing": f"{timing['warmup']} warm-up steps, then {timing['rounds']} rounds × {timing['per_round']} steps "
        "per model, interleaved, starting model rotated per round",
        "solvers": f"forward tol {FORWARD_TOL:g}, backward tol {BACKWARD_TOL:g}; "
        + "plain iteration; Anderson(1) = the reference's secant step; Anderson = nflab's default, memory "
        f"{SolverConfig().anderson_memory} capped at the dimension 2. Training steps use the direct implicit backward "
        "(`backward_direct`, exact 2×2 Jacobian); the iteration counts switch it off to count the backward solves",
    }
    notes += [
        "`forward solver its/step`: forward fixed-point iterations summed over the blocks, averaged over the timed "
        "steps (i-DenseNet has none). `CPU ms` is process time, less sensitive to other load on the machine.",
        "Timings are never asserted in tests (`tests/unit/test_bench_residual_equivalence.py` keeps this suite "
        "running).",
    ]
    return SuiteResult(settings=settings, tables=[step_table, iteration_table], notes=notes)


def add_monotone_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--monotone-rounds", type=int, default=30, help="interleaved rounds (step time)")
    group.add_argument("--monotone-per-round", type=int, default=3, help="timed steps per model and round")
    group.add_argument("--monotone-warmup", type=int, default=5, help="untimed warm-up steps per model")
    group.add_argument("--monotone-train-steps", type=int, default=300, help="training steps before counting")
    group.add_argument("--monotone-count-batches", type=int, default=4, help="batches whose solves are counted")
    group.add_argument("--monotone-max-iter", type=int, default=2000, help="iteration cap of both solves (counting)")
    group.add_argument("--monotone-blocks", type=int, default=None, help="blocks of both models (default: toy, 10)")
    group.add_argument("--monotone-seed", type=int, default=0, help="seed of the trained model and its batches")


SUITE = Suite(
    name="monotone",
    title="Monotone Flows: step time vs i-DenseNet, Anderson vs plain fixed-point iterations",
    run=run_monotone,
    add_arguments=add_monotone_arguments,
    packages=("nflab",),
)
