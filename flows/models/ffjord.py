"""FFJORD (Grathwohl et al. 2019): continuous normalizing flows with free-form dynamics and a trace estimator.

Vectors: ``blocks`` CNFs in sequence. Images (c, h, w): ODENVP — logit preprocessing, then per non-last scale
n CNFs → squeeze → n CNFs → factor out half the channels; the last scale n CNFs (3×3 ConcatConv2d dynamics).
Published defaults (rtqichen/ffjord): toy — concatsquash 64-64-64, tanh, 1 block, T₀ = 0.5, brute-force
divergence; images (the ``images`` preset, their default) — concat 64-64-64, softplus, 2 blocks, T₀ = 1,
Rademacher Hutchinson, α = 1e-6; both dopri5 with atol = rtol = 1e-5 and trainable T. The divergence estimator is
the ``estimator`` option (``exact`` or ``hutchinson``) and its probe ``probe``, as in every family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ..jacobian import MAX_EXACT_DIM
from ..layers import FactorOut, Squeezed
from ..layers.cnf import CNF, FIXED_STEP_SOLVERS, ODESolverOptions, SolverName
from ..layers.odefunc import Activation, LayerType, dynamics_net
from ..logdet.config import ProbeKind
from ..registry import register
from ..transform import Compose, Transform
from .common import Preprocess, Search, halvings, option, preprocessing, require

IMAGES = {  # the published image model (ODENVP): the default for images
    "layer_type": "concat", "activation": "softplus", "blocks": 2, "end_time": 1.0, "estimator": "hutchinson",
    "probe": "rademacher",
}  # fmt: skip


@dataclass
class FFJORDConfig:
    hidden: tuple[int, ...] = option(
        (64, 64, 64), "hidden widths (channels for images) of the dynamics net", ge=1, le=65536
    )
    layer_type: LayerType = option("concatsquash", "time-dependent layers (images: concat)")
    activation: Activation = option("tanh", "activation after every layer but the last (images: softplus)")
    blocks: int = option(1, "CNFs in sequence (images: per half scale, 2)", ge=1, le=1000)
    scales: int | None = option(None, "images: number of scales; null: as many as the image allows (sides >= 4)", ge=1)
    end_time: float = option(0.5, "initial integration time T0 (T = s², s = √T0; images: 1.0)", gt=0, le=1e6)
    train_end_time: bool = option(True, "learn the end time T")
    estimator: Literal["exact", "hutchinson"] = option(
        "exact", "divergence: exact (D VJPs, brute force) or hutchinson (unbiased, one VJP; images)",
        spaces=("estimator",),
    )  # fmt: skip
    probe: ProbeKind = option("gaussian", "Hutchinson probe distribution (images: rademacher)", spaces=("estimator",))
    exact_eval_max_dim: int = option(
        2, "eval mode: exact divergence for samples of at most this many dimensions", ge=0, le=MAX_EXACT_DIM
    )
    solver: SolverName = option("dopri5", "torchdiffeq method (rk4, midpoint, euler need step_size)")
    atol: float = option(1e-5, "absolute tolerance of adaptive solvers", gt=0, search=Search(1e-7, 1e-3, log=True),
                         spaces=("solver",))  # fmt: skip
    rtol: float = option(1e-5, "relative tolerance of adaptive solvers", gt=0, search=Search(1e-7, 1e-3, log=True),
                         spaces=("solver",))  # fmt: skip
    step_size: float | None = option(None, "step size in units of t for the fixed-step solvers", gt=0)
    adjoint: bool = option(True, "backpropagate with the adjoint ODE (O(1) memory) instead of through the solver")
    max_steps: int = option(10_000, "solver steps allowed per solve before an ODESolveError", ge=1, le=10**8)
    kinetic_energy: float = option(0.0, "coefficient of the kinetic-energy penalty mean_batch ∫ ‖f‖²/D dt", ge=0)
    jacobian_frobenius: float = option(0.0, "coefficient of the Jacobian penalty mean_batch ∫ ‖∂f/∂z‖²_F/D dt", ge=0)
    preprocess: Preprocess = option("logit", "image preprocessing layer")
    alpha: float = option(1e-6, "logit α for images (FFJORD: 1e-6 for every dataset)", ge=0, lt=0.5)

    def validate(self) -> None:
        if self.solver in FIXED_STEP_SOLVERS:
            require(
                self.step_size is not None, "step_size", self.step_size, f"a number > 0 (required by {self.solver})"
            )


def make_cnf(shape: tuple[int, ...], cfg: FFJORDConfig) -> CNF:
    """One CNF block on samples of ``shape``."""
    net = dynamics_net(shape, cfg.hidden, cfg.layer_type, cfg.activation)
    solver = ODESolverOptions(cfg.solver, cfg.atol, cfg.rtol, cfg.step_size, cfg.adjoint, cfg.max_steps)
    return CNF(
        net,
        end_time=cfg.end_time,
        train_end_time=cfg.train_end_time,
        divergence="brute_force" if cfg.estimator == "exact" else "hutchinson",
        noise=cfg.probe,
        exact_eval_max_dim=cfg.exact_eval_max_dim,
        solver=solver,
        kinetic_energy=cfg.kinetic_energy,
        jacobian_frobenius=cfg.jacobian_frobenius,
    )


def odenvp_scales(h: int, w: int) -> int:
    """FFJORD's scale count: the resolutions with both sides >= 4 reached by halving (28 → 3, 32 → 4, 8 → 2)."""
    return halvings(h, w, min_size=4) + 1


def _scale(shape: tuple[int, int, int], index: int, n_scales: int, cfg: FFJORDConfig) -> Transform:
    """n CNFs at (c, h, w); unless last: squeeze → n CNFs at (4c, h/2, w/2) → factor out half → next scale."""
    c, h, w = shape
    blocks = cfg.blocks
    first = [make_cnf(shape, cfg) for _ in range(blocks)]
    if index == n_scales - 1:
        return Compose(*first)
    squeezed = (4 * c, h // 2, w // 2)
    inner = _scale((2 * c, h // 2, w // 2), index + 1, n_scales, cfg)
    second = [make_cnf(squeezed, cfg) for _ in range(blocks)]
    return Compose(*first, Squeezed(Compose(*second, FactorOut(inner))))


@register(
    "ffjord",
    FFJORDConfig,
    presets={"images": IMAGES, "small": {"hidden": (32, 32), "blocks": 1, "atol": 1e-3, "rtol": 1e-3}},
    by_data={"images": "images"},
    summary="continuous normalizing flow (ODE, Hutchinson or exact trace), multi-scale ODENVP for images",
)
def build_ffjord(shape: tuple[int, ...], cfg: FFJORDConfig) -> Transform:
    dim = math.prod(shape)
    require(
        cfg.estimator == "hutchinson" or dim <= MAX_EXACT_DIM,
        "estimator",
        cfg.estimator,
        f"hutchinson for samples of {dim} > {MAX_EXACT_DIM} dimensions (exact needs D VJPs per evaluation)",
    )
    if len(shape) == 1:
        return Compose(*[make_cnf(shape, cfg) for _ in range(cfg.blocks)])
    c, h, w = shape
    n_scales = odenvp_scales(h, w)
    if cfg.scales is not None:
        n_scales = min(n_scales, cfg.scales)
    pre = preprocessing(cfg.preprocess, cfg.alpha)
    return Compose(*([pre] if pre else []), _scale((c, h, w), 0, n_scales, cfg))
