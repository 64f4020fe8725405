"""E5, the running-time breakdown of a training step (i-ResNet's table: plain 0.31 s, + spectral norm 0.57 s, + log-det
1.88 s on their GPU), for every family, on the user's own hardware.

Three variants of one family's toy model, built from the shipped model by swapping modules (never a copy of a
model's code):

- ``plain``: every ``SpectralLinear`` replaced by an ``nn.Linear`` holding its current normalised weight, every
  log-det estimator by :class:`NoLogDet` (the block's map only); step = forward + backward of mean Σ z², Adam step with
  lr 0 (the same optimiser work; unconstrained weights must stay contractive for the implicit and monotone solves);
- ``+Lipschitz``: the shipped layers with :class:`NoLogDet` estimators; mean Σ z², Adam(1e-3), the power-iteration
  hook after the step;
- ``+log-det``: the shipped model: −mean log p(x), Adam(1e-3), the hook — a full training step with the family's own
  estimator.

Families without spectral normalisation or a series log-det (couplings, autoregressive, FFJORD, whose log-det is
part of the map) have only the ``+log-det`` variant: their full step is reported and the other two are n/a.

Timing (:func:`measure_interleaved`): warm-up steps, then rounds; every round runs ``per_round`` steps of every
contender (the starting contender rotated per round), each step timed alone with ``time.perf_counter`` (wall) and
``time.process_time`` (CPU of this process: less sensitive to other processes on a shared machine). Medians and
inter-quartile ranges are reported.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .. import hooks
from ..blocks import EstimatedLogDetBlock
from ..data import sample_toy
from ..flow import Flow
from ..layers.lipschitz import SpectralLinear
from ..logdet import LogDetConfig, PowerSeriesLogDet
from ..registry import available, build, family

E5_VARIANTS: tuple[str, ...] = ("plain", "+Lipschitz", "+log-det")
PUBLISHED_E5 = "i-ResNet paper (images, their GPU): plain 0.31 s, + spectral norm 0.57 s, + log-det 1.88 s"
LR = 1e-3


def median_iqr(values: Sequence[float]) -> tuple[float, float]:
    """Median and inter-quartile range (Q3 − Q1, exclusive method) of at least one value."""
    if len(values) < 2:
        return float(values[0]), 0.0
    q1, _, q3 = statistics.quantiles(values, n=4)
    return statistics.median(values), q3 - q1


@dataclass
class Contender:
    """One model in an interleaved timing run.

    ``prepare(i)`` sets up step i untimed (batch copy, RNG plan); ``step()`` is the timed training step and returns
    the loss; ``terms()`` the number of log-det series terms of the last step (summed over blocks), if any.
    """

    label: str
    module: nn.Module
    prepare: Callable[[int], None]
    step: Callable[[], float]
    terms: Callable[[], float] | None = None

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.module.parameters() if p.requires_grad)


@dataclass
class Measurement:
    contender: Contender
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    terms: list[float] = field(default_factory=list)
    last_loss: float = float("nan")

    @property
    def median_ms(self) -> float:
        return median_iqr(self.wall)[0] * 1e3

    @property
    def iqr_ms(self) -> float:
        return median_iqr(self.wall)[1] * 1e3

    @property
    def cpu_ms(self) -> float:
        return median_iqr(self.cpu)[0] * 1e3

    @property
    def mean_terms(self) -> float:
        return sum(self.terms) / len(self.terms) if self.terms else float("nan")


def measure_interleaved(
    contenders: Sequence[Contender], *, warmup: int, rounds: int, per_round: int
) -> list[Measurement]:
    """Warm every contender up, then ``rounds`` rounds of ``per_round`` timed steps each, starting contender rotated.

    Every contender runs the same sequence of step indices (warm-up included), so index-keyed plans line up.
    """
    results = [Measurement(c) for c in contenders]
    counters = [0] * len(contenders)

    def run(k: int, record: bool) -> None:
        contender, result = contenders[k], results[k]
        contender.prepare(counters[k])
        counters[k] += 1
        wall0, cpu0 = time.perf_counter(), time.process_time()
        loss = contender.step()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        result.last_loss = loss
        if record:
            result.wall.append(wall)
            result.cpu.append(cpu)
            if contender.terms is not None:
                result.terms.append(contender.terms())

    for k in range(len(contenders)):
        for _ in range(warmup):
            run(k, record=False)
    gc.collect()
    for r in range(rounds):
        for j in range(len(contenders)):
            k = (j + r) % len(contenders)
            for _ in range(per_round):
                run(k, record=True)
    return results


def training_step(
    module: nn.Module,
    log_prob: Callable[[Tensor], Tensor],
    batch: Callable[[], Tensor],
    *,
    after_step: Callable[[], None],
    lr: float = LR,
) -> Callable[[], float]:
    """zero_grad, loss = −mean log p(x), backward, Adam step, ``after_step()`` (power iterations); returns the loss."""
    opt = torch.optim.Adam(module.parameters(), lr=lr)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = -log_prob(batch()).mean()
        loss.backward()
        opt.step()
        after_step()
        return float(loss.detach())

    return step


class NoLogDet(nn.Module):
    """Stands in for a block's ``PowerSeriesLogDet``: returns (g(x), 0) — the block's map without any log-det.

    Its ``config`` says ``exact`` (no series), so the block hands it the plain branch, without the derivative cache
    that only serves the series' Jacobian products.
    """

    last_n_terms = 0

    def __init__(self) -> None:
        super().__init__()
        self.config = LogDetConfig(kind="exact")

    def configure(self, config: Any) -> None:
        """Estimator options do not apply: there is no estimate."""

    def forward(
        self, g: Callable[[Tensor], Tensor], x: Tensor, *, training: bool, params: Sequence[Tensor] = ()
    ) -> tuple[Tensor, Tensor]:
        return g(x), x.new_zeros(x.shape[0])


def without_logdet(model: nn.Module) -> nn.Module:
    """Replace every log-det estimator of ``model`` by ``NoLogDet`` (in place); returns ``model``."""
    for block in [m for m in model.modules() if isinstance(m, EstimatedLogDetBlock)]:
        for name, child in list(block.named_children()):
            if isinstance(child, PowerSeriesLogDet):
                setattr(block, name, NoLogDet())
    return model


def plain_linear(layer: SpectralLinear) -> nn.Linear:
    """An ordinary ``nn.Linear`` holding ``layer``'s current normalised weight and bias (no normalisation after)."""
    linear = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    with torch.no_grad():
        linear.weight.copy_(layer.normalized_weight())
        if layer.bias is not None:
            linear.bias.copy_(layer.bias)
    return linear.to(layer.weight.dtype)


def without_spectral_norm(model: nn.Module) -> nn.Module:
    """Replace every ``SpectralLinear`` of ``model`` by ``plain_linear`` (in place); returns ``model``."""
    swaps = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, SpectralLinear)
    ]
    for parent, name, child in swaps:
        setattr(parent, name, plain_linear(child))
    return model


def has_breakdown(name: str) -> bool:
    """Whether ``name`` has the three variants: spectral normalisation and a series log-det (the Lipschitz families)."""
    return not family(name).wraps_base and "coeff" in family(name).config_cls.__dataclass_fields__


def build_variant(name: str, variant: str, *, shape: tuple[int, ...] = (2,), seed: int = 0, **options: Any) -> Flow:
    """The model of family ``name`` (``options`` on top of its defaults) as ``plain``, ``+Lipschitz`` or ``+log-det``
    (module docstring); families without the breakdown have only ``+log-det``."""
    if variant not in E5_VARIANTS:
        raise ValueError(f"variant must be one of {E5_VARIANTS}, got {variant!r}")
    if variant != "+log-det" and not has_breakdown(name):
        raise ValueError(f"{name} has no spectral normalisation or series log-det: only +log-det applies")
    torch.manual_seed(seed)
    flow = build(name, shape, **options)
    if variant != "+log-det":
        without_logdet(flow)
    if variant == "plain":
        without_spectral_norm(flow)
    return flow.float().train()


def squared_norm(flow: Flow) -> Callable[[Tensor], Tensor]:
    """x ↦ −Σ_i z_i² per sample (so that ``training_step``'s −mean gives mean Σ z²)."""
    return lambda x: -flow(x)[0].flatten(1).pow(2).sum(dim=1)


def variant_contender(flow: Flow, label: str, variant: str, batches: Sequence[Tensor]) -> Contender:
    """The timed training step of one variant (module docstring) on ``batches`` (cycled)."""
    current: list[Tensor] = [batches[0]]

    def prepare(i: int) -> None:
        current[0] = batches[i % len(batches)]
        torch.manual_seed(i)  # the same estimator draws for every variant and run

    def power_iterations() -> None:
        hooks.after_optimizer_step(flow)

    if variant == "+log-det":
        step = training_step(flow, flow.log_prob, lambda: current[0], after_step=power_iterations)
    elif variant == "+Lipschitz":
        step = training_step(flow, squared_norm(flow), lambda: current[0], after_step=power_iterations)
    else:
        step = training_step(flow, squared_norm(flow), lambda: current[0], after_step=lambda: None, lr=0.0)
    return Contender(f"{label} {variant}", flow, prepare, step)


def toy_batches(n_batches: int, *, batch: int, seed: int = 0, dataset: str = "checkerboard") -> list[Tensor]:
    """``n_batches`` float32 batches of a toy set (drawn once, before any timing)."""
    g = torch.Generator().manual_seed(seed)
    return [sample_toy(dataset, batch, generator=g) for _ in range(n_batches)]


def runtime_breakdown(
    families: Sequence[str] | None = None,
    *,
    batch: int = 500,
    blocks: int | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    warmup: int = 2,
    rounds: int = 5,
    per_round: int = 2,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per family: ms per training step of each variant (median wall and CPU, IQR) on 2-D toy data.

    ``families``: default every registered non-wrapping family; ``blocks``: the number of blocks of every Lipschitz
    family (default: its toy model); ``options``: per-family options on top (e.g. fewer blocks)."""
    names = list(families) if families is not None else [n for n in available() if not family(n).wraps_base]
    batches = toy_batches(max(4, warmup + rounds * per_round), batch=batch, seed=seed)
    plan: list[tuple[str, str]] = []
    contenders: list[Contender] = []
    for name in names:
        extra = dict((options or {}).get(name, {}))
        if blocks is not None and has_breakdown(name):
            extra["blocks"] = (blocks,)
        for variant in E5_VARIANTS if has_breakdown(name) else ("+log-det",):
            flow = build_variant(name, variant, seed=seed, **extra)
            contenders.append(variant_contender(flow, name, variant, batches))
            plan.append((name, variant))
    measured = measure_interleaved(contenders, warmup=warmup, rounds=rounds, per_round=per_round)
    rows: dict[str, dict[str, Any]] = {}
    for (name, variant), m in zip(plan, measured, strict=True):
        row = rows.setdefault(name, {"family": name, "variants": {}})
        n_blocks = sum(isinstance(x, EstimatedLogDetBlock) for x in m.contender.module.modules())
        row.update({"params": m.contender.n_params, "blocks": n_blocks or None, "batch": batch})
        row["variants"][variant] = {
            "wall_ms": m.median_ms,
            "wall_iqr_ms": m.iqr_ms,
            "cpu_ms": m.cpu_ms,
            "steps": len(m.wall),
            "last_loss": m.last_loss,
        }
    for row in rows.values():
        plain = row["variants"].get("plain")
        for values in row["variants"].values():
            values["ratio_to_plain"] = values["wall_ms"] / plain["wall_ms"] if plain else None
    return list(rows.values())
