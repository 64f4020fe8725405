"""FFJORD (Grathwohl et al. 2019): continuous normalizing flows with free-form dynamics and a trace estimator.

Vectors: ``blocks`` CNFs in sequence. Images (c, h, w): ODENVP — logit preprocessing, then per non-last scale
n CNFs → squeeze → n CNFs → factor out half the channels; the last scale n CNFs (3×3 ConcatConv2d dynamics).
Published defaults (rtqichen/ffjord): toy — concatsquash 64-64-64, tanh, 1 block, T₀ = 0.5, brute-force
divergence; images — concat 64-64-64, softplus, 2 blocks, T₀ = 1, Rademacher Hutchinson, α = 1e-6; both
dopri5 with atol = rtol = 1e-5 and trainable T. Options that differ between the two are None by default and
resolved from the shape.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..jacobian import MAX_EXACT_DIM
from ..layers import FactorOut, Squeezed
from ..layers.cnf import CNF, FIXED_STEP_SOLVERS, ODESolverOptions, SolverName
from ..layers.divergence import DivergenceKind
from ..layers.odefunc import Activation, LayerType, dynamics_net
from ..logdet.config import ProbeKind
from ..registry import register
from ..transform import Compose, Transform
from .common import Preprocess, halvings, option, preprocessing, require

# toy (vectors) / image defaults of the options that default to None
SHAPE_DEFAULTS: dict[str, tuple[object, object]] = {
    "layer_type": ("concatsquash", "concat"),
    "activation": ("tanh", "softplus"),
    "blocks": (1, 2),
    "end_time": (0.5, 1.0),
    "divergence": ("brute_force", "hutchinson"),
    "noise": ("gaussian", "rademacher"),
}


@dataclass
class FFJORDConfig:
    hidden: tuple[int, ...] = option((64, 64, 64), "hidden widths (channels for images) of the dynamics net")
    layer_type: LayerType | None = option(None, "time-dependent layers; None: concatsquash (vectors), concat (images)")
    activation: Activation | None = option(None, "activation after every layer but the last; None: tanh / softplus")
    blocks: int | None = option(None, "CNFs in sequence (images: per half scale); None: 1 (vectors), 2 (images)")
    scales: int | None = option(None, "images: number of scales; None: as many as the image allows (sides >= 4)")
    end_time: float | None = option(None, "initial integration time T0 (T = s², s = √T0); None: 0.5 / 1.0")
    train_end_time: bool = option(True, "learn the end time T")
    divergence: DivergenceKind | None = option(
        None, "brute_force (exact, D VJPs) or hutchinson (unbiased, one VJP); None: brute_force / hutchinson"
    )
    noise: ProbeKind | None = option(None, "Hutchinson noise ε; None: gaussian (vectors) / rademacher (images)")
    exact_eval_max_dim: int = option(2, "eval mode: exact divergence for samples of at most this many dimensions")
    solver: SolverName = option("dopri5", "torchdiffeq method (rk4, midpoint, euler need step_size)")
    atol: float = option(1e-5, "absolute tolerance of adaptive solvers")
    rtol: float = option(1e-5, "relative tolerance of adaptive solvers")
    step_size: float | None = option(None, "step size in units of t for the fixed-step solvers")
    adjoint: bool = option(True, "backpropagate with the adjoint ODE (O(1) memory) instead of through the solver")
    max_steps: int = option(10_000, "solver steps allowed per solve before an ODESolveError")
    kinetic_energy: float = option(0.0, "coefficient of the kinetic-energy penalty mean_batch ∫ ‖f‖²/D dt")
    jacobian_frobenius: float = option(0.0, "coefficient of the Jacobian penalty mean_batch ∫ ‖∂f/∂z‖²_F/D dt")
    preprocess: Preprocess = option("logit", "image preprocessing layer")
    alpha: float = option(1e-6, "logit α for images (FFJORD: 1e-6 for every dataset)")

    def validate(self) -> None:
        require(all(h >= 1 for h in self.hidden), "ffjord.hidden", self.hidden, "a list of integers >= 1")
        for key in ("blocks", "scales"):
            value = getattr(self, key)
            require(value is None or value >= 1, f"ffjord.{key}", value, "an integer >= 1 or null")
        require(self.end_time is None or self.end_time > 0, "ffjord.end_time", self.end_time, "a number > 0 or null")
        require(self.exact_eval_max_dim >= 0, "ffjord.exact_eval_max_dim", self.exact_eval_max_dim, "an integer >= 0")
        require(self.atol > 0, "ffjord.atol", self.atol, "a number > 0")
        require(self.rtol > 0, "ffjord.rtol", self.rtol, "a number > 0")
        if self.solver in FIXED_STEP_SOLVERS:
            require(
                self.step_size is not None and self.step_size > 0,
                "ffjord.step_size",
                self.step_size,
                f"a number > 0 (required by solver {self.solver})",
            )
        require(
            self.step_size is None or self.step_size > 0, "ffjord.step_size", self.step_size, "a number > 0 or null"
        )
        require(self.max_steps >= 1, "ffjord.max_steps", self.max_steps, "an integer >= 1")
        for key in ("kinetic_energy", "jacobian_frobenius"):
            require(getattr(self, key) >= 0, f"ffjord.{key}", getattr(self, key), "a number >= 0")
        require(0 <= self.alpha < 0.5, "ffjord.alpha", self.alpha, "a number in [0, 0.5)")

    def for_shape(self, shape: tuple[int, ...]) -> FFJORDConfig:
        """A copy with every None option replaced by its toy (vector) or image default."""
        column = 0 if len(shape) == 1 else 1
        filled = {k: v[column] for k, v in SHAPE_DEFAULTS.items() if getattr(self, k) is None}
        return dataclasses.replace(self, **filled)


def make_cnf(shape: tuple[int, ...], cfg: FFJORDConfig) -> CNF:
    """One CNF block on samples of ``shape`` (``cfg`` already resolved with :meth:`FFJORDConfig.for_shape`)."""
    net = dynamics_net(shape, cfg.hidden, cfg.layer_type, cfg.activation)  # type: ignore[arg-type]
    solver = ODESolverOptions(cfg.solver, cfg.atol, cfg.rtol, cfg.step_size, cfg.adjoint, cfg.max_steps)
    return CNF(
        net,
        end_time=cfg.end_time,  # type: ignore[arg-type]
        train_end_time=cfg.train_end_time,
        divergence=cfg.divergence,  # type: ignore[arg-type]
        noise=cfg.noise,  # type: ignore[arg-type]
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
    blocks: int = cfg.blocks  # type: ignore[assignment]
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
    presets={"small": {"hidden": (32, 32), "blocks": 1, "atol": 1e-3, "rtol": 1e-3}},
    summary="continuous normalizing flow (ODE, Hutchinson or exact trace), multi-scale ODENVP for images",
)
def build_ffjord(shape: tuple[int, ...], cfg: FFJORDConfig) -> Transform:
    cfg = cfg.for_shape(shape)
    dim = math.prod(shape)
    require(
        cfg.divergence == "hutchinson" or dim <= MAX_EXACT_DIM,
        "ffjord.divergence",
        cfg.divergence,
        f"hutchinson for samples of {dim} > {MAX_EXACT_DIM} dimensions (brute_force needs D VJPs per evaluation)",
    )
    if len(shape) == 1:
        return Compose(*[make_cnf(shape, cfg) for _ in range(cfg.blocks)])  # type: ignore[arg-type]
    c, h, w = shape
    n_scales = odenvp_scales(h, w)
    if cfg.scales is not None:
        n_scales = min(n_scales, cfg.scales)
    pre = preprocessing(cfg.preprocess, cfg.alpha)
    return Compose(*([pre] if pre else []), _scale((c, h, w), 0, n_scales, cfg))
