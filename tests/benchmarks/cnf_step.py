"""CNF suite (issue 6): one training step of nflab's FFJORD next to zuko's ``CNF``, with the NFE of every step.

**Same shape on both sides.** 2-D data, dynamics net with three hidden layers of 64 units and tanh, Hutchinson trace
estimate with one Gaussian ε per sample drawn once per solve (nflab ``divergence="hutchinson", noise="gaussian"``,
zuko ``exact=False``), Dormand–Prince 5(4) with atol = rtol = ``--cnf-tol`` (default 1e-5) on both sides, integration
over a time interval of length 1 (nflab ``end_time=1.0, train_end_time=False``; zuko integrates t ∈ [0, 1]),
standard-normal base. Time enters differently: nflab's toy default ``concatsquash`` layers gate and shift every
layer by t; zuko's MLP reads [x, cos(kπt), sin(kπt)], k = 1..3. Parameters: nflab 9,224, zuko 9,026 (+2.2 %).

A step = ``zero_grad``; loss = −mean log p(x) on 500 points of nflab's checkerboard set (float32, CPU, a pool of
batches drawn before timing); ``backward``; ``Adam(lr=1e-3).step``.

**Backward passes compared.** nflab ``adjoint=True`` (its default, FFJORD's: the adjoint ODE solved backwards with the
same tolerances, O(1) memory in the number of steps) and ``adjoint=False`` (backpropagation through the recorded
solver graph, memory ∝ NFE). zuko uses its adaptive checkpoint adjoint: it stores every accepted step and re-runs
each of them backwards (one VJP per Runge–Kutta stage), i.e. the same work as direct backpropagation plus a second
forward evaluation per stage.

**NFE differ at equal nominal tolerance**, so they are reported and costs are also given per function evaluation
(ms per step ÷ (NFE forward + NFE backward)). torchdiffeq's dopri5 reuses the last stage (6 evaluations per step, 2
more to choose the first step) and controls a mixed RMS norm over (z, log-det); zuko evaluates 7 stages per attempted
step, controls the max-norm of the error, and relaxes the log-det's tolerance by 100. An evaluation is not the same
work everywhere: nflab's and zuko's forward evaluations compute f and one VJP; backward evaluations (adjoint /
checkpoint) recompute them and differentiate once more; nflab's direct backward evaluates nothing (NFE backward 0)
and runs the stored graph instead. The per-step ratio is the one that decides which is faster.

NFE are counted by nflab's own counters (``training_metrics()``) and, for zuko, by a forward hook on its ODE net
(evaluations before ``backward`` = forward, during ``backward`` = backward).

Timing: ``torch.set_num_threads(--threads)`` (default 1), warm-up steps, then rounds; every round runs
``--cnf-per-round`` steps of every contender (the starting contender rotated per round), each step timed alone with
``time.perf_counter`` (wall) and ``time.process_time`` (CPU of this process, less sensitive to other processes).
All contenders train on the same batches for the same number of steps, so their NFE grow alike as training
proceeds. Medians and IQR are reported.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from benchlib import Suite, SuiteResult, Table, median_iqr
from torch import Tensor, nn

import nflab.flows as nf

DIM = 2
BATCH = 500
HIDDEN = (64, 64, 64)


@dataclass
class StepRecord:
    wall: float
    cpu: float
    nfe_forward: int
    nfe_backward: int
    loss: float


@dataclass
class Contender:
    """A model with a training step that returns (loss, NFE forward, NFE backward)."""

    name: str
    module: nn.Module
    step: Callable[[Tensor], tuple[float, int, int]]
    records: list[StepRecord] = field(default_factory=list)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.module.parameters() if p.requires_grad)

    def median(self, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.records)

    def iqr_ms(self) -> float:
        return median_iqr([r.wall for r in self.records])[1] * 1e3

    def ms_per_nfe(self) -> float:
        return statistics.median(r.wall * 1e3 / max(1, r.nfe_forward + r.nfe_backward) for r in self.records)


def zuko_available() -> bool:
    return importlib.util.find_spec("zuko") is not None


def make_batches(n_batches: int, *, seed: int = 0) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [nf.data.sample_toy("checkerboard", BATCH, generator=g) for _ in range(n_batches)]


def build_nflab(adjoint: bool, tol: float, *, seed: int = 0) -> Contender:
    """nflab's FFJORD with the toy architecture, Hutchinson trace and unit integration time."""
    torch.manual_seed(seed)
    flow = nf.build(
        "ffjord",
        (DIM,),
        hidden=HIDDEN,
        activation="tanh",
        divergence="hutchinson",
        noise="gaussian",
        end_time=1.0,
        train_end_time=False,
        atol=tol,
        rtol=tol,
        adjoint=adjoint,
    ).train()
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3)

    def step(x: Tensor) -> tuple[float, int, int]:
        opt.zero_grad(set_to_none=True)
        loss = -flow.log_prob(x).mean()
        loss.backward()
        opt.step()
        metrics = nf.hooks.training_metrics(flow)
        return loss.item(), int(metrics["nfe_forward"]), int(metrics["nfe_backward"])

    return Contender(f"nflab (adjoint={adjoint})", flow, step)


def build_zuko(tol: float, *, seed: int = 0) -> Contender:
    """zuko's CNF of the same shape (tanh, hidden 64-64-64, Hutchinson, same tolerances)."""
    import zuko

    torch.manual_seed(seed)
    flow = zuko.flows.CNF(DIM, hidden_features=HIDDEN, activation=nn.Tanh, exact=False, atol=tol, rtol=tol).train()
    evaluations = [0]
    flow.transform.ode.register_forward_hook(lambda *_: evaluations.__setitem__(0, evaluations[0] + 1))
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3)

    def step(x: Tensor) -> tuple[float, int, int]:
        opt.zero_grad(set_to_none=True)
        evaluations[0] = 0
        loss = -flow().log_prob(x).mean()
        forward = evaluations[0]
        loss.backward()
        opt.step()
        return loss.item(), forward, evaluations[0] - forward

    return Contender("zuko", flow, step)


def measure(
    contenders: Sequence[Contender], batches: Sequence[Tensor], *, warmup: int, rounds: int, per_round: int
) -> None:
    """Warm-up, then interleaved rounds of individually timed steps (records appended to each contender)."""
    i = 0
    for c in contenders:
        for k in range(warmup):
            c.step(batches[k % len(batches)])
    gc.collect()
    for r in range(rounds):
        for j in range(len(contenders)):
            c = contenders[(j + r) % len(contenders)]
            for _ in range(per_round):
                x = batches[i % len(batches)]
                i += 1
                w0, c0 = time.perf_counter(), time.process_time()
                loss, nfe_f, nfe_b = c.step(x)
                c.records.append(StepRecord(time.perf_counter() - w0, time.process_time() - c0, nfe_f, nfe_b, loss))


def run_cnf(args: argparse.Namespace) -> SuiteResult:
    torch.set_num_threads(args.threads)
    rounds, per_round, warmup = args.cnf_rounds, args.cnf_per_round, args.cnf_warmup
    if args.quick:
        rounds, per_round, warmup = 2, 2, 2
    tol = float(args.cnf_tol)
    contenders = [build_nflab(True, tol), build_nflab(False, tol)]
    if zuko_available():
        contenders.append(build_zuko(tol))
    measure(contenders, make_batches(16), warmup=warmup, rounds=rounds, per_round=per_round)

    detail = Table(
        "Per contender: medians over the timed steps",
        ["contender", "params", "ms/step", "IQR ms", "CPU ms/step", "NFE fwd", "NFE bwd", "ms/NFE", "final loss"],
    )
    for c in contenders:
        detail.rows.append(
            [
                c.name,
                f"{c.n_params:,}",
                f"{c.median('wall') * 1e3:.1f}",
                f"{c.iqr_ms():.1f}",
                f"{c.median('cpu') * 1e3:.1f}",
                f"{c.median('nfe_forward'):.0f}",
                f"{c.median('nfe_backward'):.0f}",
                f"{c.ms_per_nfe():.2f}",
                f"{c.records[-1].loss:.3f}",
            ]
        )
    tables = [detail]
    zuko = next((c for c in contenders if c.name == "zuko"), None)
    if zuko is not None:
        summary = Table(
            "nflab ÷ zuko (goal: per step ≤ 1.0)",
            ["nflab", "per step (wall)", "per step (CPU)", "NFE fwd+bwd", "per NFE"],
        )
        for c in contenders:
            if c is zuko:
                continue
            nfe = (c.median("nfe_forward") + c.median("nfe_backward")) / (
                zuko.median("nfe_forward") + zuko.median("nfe_backward")
            )
            per_step = c.median("wall") / zuko.median("wall")
            summary.rows.append(
                [
                    c.name,
                    f"**{per_step:.2f}**" if per_step > 1.0 else f"{per_step:.2f}",
                    f"{c.median('cpu') / zuko.median('cpu'):.2f}",
                    f"{nfe:.2f}",
                    f"{c.ms_per_nfe() / zuko.ms_per_nfe():.2f}",
                ]
            )
        tables.insert(0, summary)
    settings = {
        "step": f"Adam(lr=1e-3) on −mean log p(x), batch {BATCH}×{DIM} checkerboard, float32, CPU",
        "model": f"dynamics MLP {'-'.join(map(str, HIDDEN))} tanh, Hutchinson (Gaussian ε, once per solve), "
        f"dopri5 atol = rtol = {tol:g}, time interval of length 1",
        "timing": f"{warmup} warm-up steps, then {rounds} rounds × {per_round} steps per contender "
        f"({rounds * per_round} timed steps each), contenders interleaved, starting contender rotated",
        "contenders": ", ".join(c.name for c in contenders),
    }
    notes = [
        "Equivalence and the remaining differences (time embedding, NFE accounting, what one evaluation costs on "
        "each side) are in the docstring of `tests/benchmarks/cnf_step.py`. `ms/NFE` divides the step time by all "
        "function evaluations of that step (nflab with `adjoint=False` evaluates nothing in its backward pass).",
        "Ratios > 1 mean nflab is slower. Timings are never asserted in tests.",
    ]
    return SuiteResult(settings=settings, tables=tables, notes=notes)


def add_cnf_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--cnf-rounds", type=int, default=20, help="interleaved rounds")
    group.add_argument("--cnf-per-round", type=int, default=5, help="timed steps per contender and round")
    group.add_argument("--cnf-warmup", type=int, default=30, help="untimed warm-up (training) steps per contender")
    group.add_argument("--cnf-tol", type=float, default=1e-5, help="atol = rtol of both solvers")


SUITE = Suite(
    name="cnf",
    title="One FFJORD training step: nflab vs zuko (ms and NFE)",
    run=run_cnf,
    add_arguments=add_cnf_arguments,
    packages=("nflab", "torchdiffeq", "zuko"),
)
