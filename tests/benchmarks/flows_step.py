"""Flows suite: the wall time of ONE training step of nflab's NICE, RealNVP and MAF next to zuko, nflows, normflows.

A step is what a training loop does per batch: ``zero_grad``; ``loss = −mean log p(x)`` on 500 points of nflab's
checkerboard set (float32, CPU); ``backward``; ``Adam.step``. Batches are drawn before timing (a pool cycled
through), so data generation is never timed.

What "equivalent" means here: the same family, the same depth (number of couplings / autoregressive layers),
the same conditioner MLP (ReLU, hidden widths (H, H)), the same partition scheme (alternating odd/even
coordinates; order reversal between autoregressive layers), a standard normal base, and the density (x → z)
direction computed in one pass. Parameter counts agree within ``PARAM_TOLERANCE`` (checked by
``tests/unit/test_bench_equivalence.py``). Remaining, documented differences:

- nflab's coupling conditioner reads the masked full vector (d inputs, d or 2d outputs, the unused outputs
  masked away), the peers read and write only their half: +1.5 % (NICE) / +2.3 % (RealNVP) parameters for nflab.
- Scale functions differ by library: nflab RealNVP ``γ·tanh(s)`` with a learned γ per dimension; zuko a soft-
  clamped ``exp`` (``MonotonicAffineTransform``); nflows ``sigmoid(s + 2) + 1e-3``; normflows ``exp``.
- NICE's diagonal scaling: nflab ``DiagonalScaling``; zuko an unconditional ``MonotonicAffineTransform`` with
  zero shift; nflows has no learnable scaling layer, so a 10-line ``Transform`` (``NflowsScaling``) is added;
  normflows ``AffineConstFlow(shift=False)``.
- MAF: nflows/normflows ``MaskedAffineAutoregressiveTransform(num_blocks=1, use_residual_blocks=False)`` is the
  MADE D → H → H → 2D with ReLU, the same as nflab's ``hidden=(H, H)``. normflows evaluates densities through
  ``inverse``, which for its MAF layer is the sequential D-pass direction; it is wrapped in
  ``normflows.flows.Reverse`` so that ``log_prob`` is the one-pass direction, as in the other libraries.
- normflows' MLP zero-initialises its last layer (``init_zeros=True``) for stability of its unbounded ``exp``
  scale; initial values do not change the cost of a step.

Timing: ``torch.set_num_threads`` fixed (``--threads``, default 1, reported), warm-up steps, then rounds: every
round runs ``--flows-per-round`` steps of each library (starting library rotated per round) so that machine
noise falls on all of them alike; each step is timed alone with ``time.perf_counter``; median and IQR reported.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from benchlib import Suite, SuiteResult, Table, median_iqr
from torch import Tensor, nn

import nflab.flows as nf

FAMILIES: tuple[str, ...] = ("nice", "realnvp", "maf")
LIBRARIES: tuple[str, ...] = ("nflab", "zuko", "nflows", "normflows")
PEERS: tuple[str, ...] = LIBRARIES[1:]
DEPTH: dict[str, int] = {"nice": 4, "realnvp": 8, "maf": 5}
DIM = 2
BATCH = 500
PARAM_TOLERANCE = 0.05  # |params(peer) / params(nflab) − 1| allowed where equivalence is claimed


@dataclass
class Model:
    """A model of one library with a uniform ``log_prob(x) -> Tensor[batch]``."""

    library: str
    family: str
    width: int
    module: nn.Module
    log_prob: Callable[[Tensor], Tensor]

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.module.parameters() if p.requires_grad)


def available_libraries() -> list[str]:
    """nflab plus the peers that are installed (peers are optional: the ``bench`` extra)."""
    return ["nflab", *(lib for lib in PEERS if importlib.util.find_spec(lib) is not None)]


# ---------------------------------------------------------------------------------------------------------- nflab
def _nflab(family: str, width: int) -> Model:
    hidden = (width, width)
    if family == "nice":
        flow = nf.build("nice", (DIM,), couplings=DEPTH[family], hidden=hidden)
    elif family == "realnvp":
        flow = nf.build("realnvp", (DIM,), couplings=DEPTH[family], hidden=hidden)
    else:
        flow = nf.build("maf", (DIM,), layers=DEPTH[family], hidden=hidden)
    return Model("nflab", family, width, flow, flow.log_prob)


# ----------------------------------------------------------------------------------------------------------- zuko
def _zuko_scaling(log_scale: Tensor) -> torch.distributions.Transform:
    """NICE's diagonal scaling z = x·e^a as a zuko transform (zero shift, learned log-scale a)."""
    from zuko.transforms import DependentTransform, MonotonicAffineTransform

    return DependentTransform(MonotonicAffineTransform(torch.zeros_like(log_scale), log_scale), 1)


def _zuko(family: str, width: int) -> Model:
    import zuko

    hidden = (width, width)
    if family == "nice":
        from zuko.lazy import UnconditionalTransform
        from zuko.transforms import AdditiveTransform

        nice = zuko.flows.NICE(
            DIM, transforms=DEPTH[family], hidden_features=hidden, univariate=AdditiveTransform, shapes=((),)
        )
        scaling = UnconditionalTransform(_zuko_scaling, torch.zeros(DIM))
        flow: nn.Module = zuko.lazy.Flow([*nice.transform.transforms, scaling], nice.base)
    elif family == "realnvp":
        flow = zuko.flows.RealNVP(DIM, transforms=DEPTH[family], hidden_features=hidden)
    else:
        flow = zuko.flows.MAF(DIM, transforms=DEPTH[family], hidden_features=hidden)
    return Model("zuko", family, width, flow, lambda x: flow().log_prob(x))


# --------------------------------------------------------------------------------------------------------- nflows
def _nflows_scaling_class() -> type:
    from nflows.transforms.base import Transform

    class NflowsScaling(Transform):
        """NICE's diagonal scaling z = x·e^s (nflows has no learnable element-wise scaling layer)."""

        def __init__(self, features: int) -> None:
            super().__init__()
            self.log_scale = nn.Parameter(torch.zeros(features))

        def forward(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
            return inputs * self.log_scale.exp(), self.log_scale.sum().expand(inputs.shape[0])

        def inverse(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
            return inputs * (-self.log_scale).exp(), -self.log_scale.sum().expand(inputs.shape[0])

    return NflowsScaling


class _IgnoreContext(nn.Module):
    """nflows couplings call ``net(x, context)``; its plain ``MLP`` takes ``x`` only (``ResidualNet`` is residual)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.net(x)


def _nflows(family: str, width: int) -> Model:
    from nflows.distributions.normal import StandardNormal
    from nflows.flows.base import Flow
    from nflows.nn.nets import MLP
    from nflows.transforms import (
        AdditiveCouplingTransform,
        AffineCouplingTransform,
        CompositeTransform,
        MaskedAffineAutoregressiveTransform,
        ReversePermutation,
    )

    def net(d_in: int, d_out: int) -> nn.Module:
        return _IgnoreContext(MLP((d_in,), (d_out,), hidden_sizes=[width, width]))

    def mask(i: int) -> Tensor:  # > 0 = transformed: the coordinates that nflab's coupling i does not condition on
        return (torch.arange(DIM) % 2 != i % 2).int()

    layers: list[nn.Module] = []
    if family == "nice":
        layers = [AdditiveCouplingTransform(mask(i), net) for i in range(DEPTH[family])]
        layers.append(_nflows_scaling_class()(DIM))
    elif family == "realnvp":
        layers = [AffineCouplingTransform(mask(i), net) for i in range(DEPTH[family])]
    else:
        for i in range(DEPTH[family]):
            if i > 0:
                layers.append(ReversePermutation(DIM))
            layers.append(MaskedAffineAutoregressiveTransform(DIM, width, num_blocks=1, use_residual_blocks=False))
    flow = Flow(CompositeTransform(layers), StandardNormal([DIM]))
    return Model("nflows", family, width, flow, flow.log_prob)


# ------------------------------------------------------------------------------------------------------ normflows
def _normflows(family: str, width: int) -> Model:
    import normflows

    def net(d_in: int, d_out: int) -> nn.Module:
        return normflows.nets.MLP([d_in, width, width, d_out], init_zeros=True)

    def split(i: int) -> str:  # "channel" conditions on coordinate 0, like nflab's coupling 0
        return "channel" if i % 2 == 0 else "channel_inv"

    half = DIM // 2
    data_to_latent: list[nn.Module] = []
    if family == "nice":
        data_to_latent = [
            normflows.flows.AffineCouplingBlock(net(half, DIM - half), scale=False, split_mode=split(i))
            for i in range(DEPTH[family])
        ]
        data_to_latent.append(normflows.flows.AffineConstFlow((DIM,), shift=False))
    elif family == "realnvp":
        data_to_latent = [
            normflows.flows.AffineCouplingBlock(net(half, 2 * (DIM - half)), scale_map="exp", split_mode=split(i))
            for i in range(DEPTH[family])
        ]
    else:
        for i in range(DEPTH[family]):
            if i > 0:
                data_to_latent.append(normflows.flows.Permute(DIM, mode="swap"))
            made = normflows.flows.MaskedAffineAutoregressive(DIM, width, num_blocks=1, use_residual_blocks=False)
            data_to_latent.append(normflows.flows.Reverse(made))
    # normflows lists flows latent → data and evaluates log_prob through each flow's ``inverse``.
    flow = normflows.NormalizingFlow(
        normflows.distributions.DiagGaussian(DIM, trainable=False), list(reversed(data_to_latent))
    )
    return Model("normflows", family, width, flow, flow.log_prob)


BUILDERS: dict[str, Callable[[str, int], Model]] = {
    "nflab": _nflab,
    "zuko": _zuko,
    "nflows": _nflows,
    "normflows": _normflows,
}


def build_model(library: str, family: str, width: int, *, seed: int = 0) -> Model:
    """The ``family`` model of ``library`` with conditioner width ``width`` (initialised from ``seed``)."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    torch.manual_seed(seed)
    model = BUILDERS[library](family, width)
    model.module.float().train()
    return model


def make_batches(n_batches: int, *, seed: int = 0) -> list[Tensor]:
    """``n_batches`` float32 batches of ``BATCH`` checkerboard points (nflab's generator)."""
    g = torch.Generator().manual_seed(seed)
    return [nf.data.sample_toy("checkerboard", BATCH, generator=g) for _ in range(n_batches)]


def make_step(model: Model, *, lr: float = 1e-3) -> Callable[[Tensor], Tensor]:
    """One training step: zero_grad, loss = −mean log p(x), backward, Adam step; returns the detached loss."""
    opt = torch.optim.Adam(model.module.parameters(), lr=lr)

    def step(x: Tensor) -> Tensor:
        opt.zero_grad(set_to_none=True)
        loss = -model.log_prob(x).mean()
        loss.backward()
        opt.step()
        return loss.detach()

    return step


@dataclass
class Timing:
    model: Model
    seconds: list[float]
    last_loss: float

    @property
    def median_ms(self) -> float:
        return median_iqr(self.seconds)[0] * 1e3

    @property
    def iqr_ms(self) -> float:
        return median_iqr(self.seconds)[1] * 1e3


def time_interleaved(
    models: Sequence[Model], batches: Sequence[Tensor], *, warmup: int, rounds: int, per_round: int
) -> list[Timing]:
    """Warm each model up, then ``rounds`` rounds of ``per_round`` individually timed steps per model."""
    steps = [make_step(m) for m in models]
    losses = [float("nan")] * len(models)
    for k, step in enumerate(steps):
        for i in range(warmup):
            losses[k] = float(step(batches[i % len(batches)]))
    seconds: list[list[float]] = [[] for _ in models]
    i = 0
    gc.collect()
    for r in range(rounds):
        for j in range(len(models)):
            k = (j + r) % len(models)  # rotate the starting library every round
            for _ in range(per_round):
                x = batches[i % len(batches)]
                i += 1
                t0 = time.perf_counter()
                loss = steps[k](x)
                seconds[k].append(time.perf_counter() - t0)
            losses[k] = float(loss)
    return [Timing(m, s, loss) for m, s, loss in zip(models, seconds, losses)]


def _fmt_ms(t: Timing) -> str:
    return f"{t.median_ms:.2f}"


def run_flows(args: argparse.Namespace) -> SuiteResult:
    """The flows suite as called by ``run.py``: every family × width, libraries interleaved."""
    torch.set_num_threads(args.threads)
    widths = [int(w) for w in str(args.flows_widths).split(",") if w]
    rounds, per_round, warmup = args.flows_rounds, args.flows_per_round, args.flows_warmup
    if args.quick:
        rounds, per_round, warmup = 3, 2, 2
    libraries = available_libraries()
    batches = make_batches(16)
    detail = Table(
        "Per model: ms per training step (median, IQR), parameters, nflab ÷ this",
        ["family", "H", "library", "params", "ms/step", "IQR ms", "nflab ÷ this", "final loss"],
    )
    summary = Table(
        "nflab against the fastest peer (goal: ratio ≤ 1.0)",
        ["family", "H", "nflab ms", "fastest peer", "peer ms", "nflab ÷ fastest peer"],
    )
    for family in FAMILIES:
        for width in widths:
            models = [build_model(lib, family, width) for lib in libraries]
            timings = time_interleaved(models, batches, warmup=warmup, rounds=rounds, per_round=per_round)
            ours = timings[0]
            for t in timings:
                detail.rows.append(
                    [
                        family,
                        str(width),
                        t.model.library,
                        f"{t.model.n_params:,}",
                        _fmt_ms(t),
                        f"{t.iqr_ms:.2f}",
                        f"{ours.median_ms / t.median_ms:.2f}",
                        f"{t.last_loss:.3f}",
                    ]
                )
            peers = timings[1:]
            if peers:
                best = min(peers, key=lambda t: t.median_ms)
                ratio = ours.median_ms / best.median_ms
                summary.rows.append(
                    [
                        family,
                        str(width),
                        _fmt_ms(ours),
                        best.model.library,
                        _fmt_ms(best),
                        f"**{ratio:.2f}**" if ratio > 1.0 else f"{ratio:.2f}",
                    ]
                )
    settings = {
        "step": f"Adam(lr=1e-3) on −mean log p(x), batch {BATCH}×{DIM} checkerboard, float32, CPU",
        "depth": ", ".join(f"{f} {d}" for f, d in DEPTH.items()) + "; conditioner hidden (H, H), ReLU",
        "timing": f"{warmup} warm-up steps, then {rounds} rounds × {per_round} steps per model "
        f"({rounds * per_round} timed steps each), libraries interleaved, starting library rotated",
        "libraries": ", ".join(libraries),
    }
    notes = [
        "Equivalence (same depth, same (H, H) ReLU conditioners, same partitions, standard normal base, one-pass "
        "density direction) and the remaining differences are listed in the docstring of "
        "`tests/benchmarks/flows_step.py`; parameter counts agree within "
        f"{PARAM_TOLERANCE:.0%} (`tests/unit/test_bench_equivalence.py`).",
        "`nflab ÷ this` > 1 means nflab is slower than that library. Timings are never asserted in tests.",
    ]
    return SuiteResult(settings=settings, tables=[summary, detail], notes=notes)


def add_flows_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--flows-widths", default="128,512", help="comma-separated conditioner widths H")
    group.add_argument("--flows-rounds", type=int, default=40, help="interleaved rounds")
    group.add_argument("--flows-per-round", type=int, default=5, help="timed steps per model and round")
    group.add_argument("--flows-warmup", type=int, default=20, help="untimed warm-up steps per model")


SUITE = Suite(
    name="flows",
    title="One training step: nflab vs zuko, nflows, normflows",
    run=run_flows,
    add_arguments=add_flows_arguments,
    packages=("nflab", "zuko", "nflows", "normflows"),
)


def iter_models(width: int, families: Iterable[str] = FAMILIES) -> Iterable[Model]:
    """Every available library's model of every family (used by the equivalence test)."""
    for family in families:
        for lib in available_libraries():
            yield build_model(lib, family, width)
