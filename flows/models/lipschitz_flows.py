"""One architecture for the five Lipschitz families (i-ResNet, Residual Flow, i-DenseNet, Implicit, Monotone).

A family is (branch g, block type, published defaults). Vectors: ``blocks`` × [block, (ActNorm)]. Images
(Residual Flows' multi-scale model, Chen et al. 2019 §1.6 of the reference): preprocessing (logit α), then per
scale ``blocks[i]`` × [block, ActNorm]; between scales a squeeze (C → 4C), optionally factoring out half the
channels; after the last scale optionally ``fc_blocks`` fully-connected blocks on the flattened tensor, and a
learned Gaussian prior over the whole latent (i-ResNet). Options left ``None`` take the toy or the image default
of the family, chosen by the shape; every option is documented by ``nflab models``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from ..blocks import ImplicitBlock, MonotoneBlock, ResidualBlock
from ..layers import ActNorm, FactorOut, Flattened, LearnedGaussian, Squeezed
from ..layers.dense import dense_net
from ..layers.lipschitz import SpectralLinear, set_power_budgets
from ..layers.lipschitz_nets import lipschitz_convnet, lipschitz_mlp
from ..logdet import LogDetConfig
from ..registry import register
from ..solvers import SolverConfig
from ..transform import Compose, Transform
from .common import Preprocess, halvings, option, preprocessing, require

Activation = Literal["lipswish", "clipswish", "cpila", "pila", "elu", "relu", "sin"]
Branch = Literal["mlp", "dense"]
BlockType = Literal["residual", "monotone", "implicit"]


@dataclass
class LipschitzFlowConfig:
    """Every option of the Lipschitz families; each family subclass changes the defaults to its paper's."""

    blocks: tuple[int, ...] | None = option(None, "vectors: (n,) blocks; images: blocks per scale")
    hidden: tuple[int, ...] = option((128, 128, 128, 128), "vectors: hidden widths of the MLP branch")
    channels: int = option(512, "images: hidden channels of the conv branch")
    kernels: tuple[int, ...] = option((3, 1, 3), "images: kernel sizes of the conv branch")
    activation: Activation = option("lipswish", "activation of the branch (cpila/clipswish double the channels)")
    cpila_k: float = option(5.0, "CPila/Pila exponent k (the normaliser is derived so that Lip <= 1)")
    cpila_shift: float = option(0.2, "CPila branch shift")
    coeff: float | None = option(None, "Lipschitz coefficient c of every layer (null: 0.9 toy, 0.98 images)")
    power_iterations: int | None = option(None, "power iterations after each step (null: 5 toy, tol images)")
    power_tol: float | None = option(None, "power-iteration tolerance after each step (null: none toy, 1e-3 images)")
    dense_depth: int = option(3, "dense branch: number of dense layers")
    dense_growth: int | None = option(None, "dense branch: growth per layer (null: 16 toy, 172 images)")
    fc_dense_growth: int = option(32, "dense branch of the fully-connected end blocks: growth")
    lip_coeff: float = option(0.98, "dense branch: Lipschitz coefficient of the learnable concatenation")
    learnable_concat: bool = option(True, "dense branch: learnable concatenation weights")
    start_learnable_concat: int | None = option(
        None, "dense branch: optimiser steps with the concatenation fixed (null: 25000 toy, 19550 ≈ 25 epochs images)"
    )
    actnorm: bool | None = option(None, "ActNorm after every block (null: off toy, on images)")
    fc_end: bool | None = option(None, "images: fully-connected blocks after the last scale (null: family default)")
    fc_blocks: int = option(4, "images: number of fully-connected end blocks")
    fc_hidden: int = option(128, "images: hidden width of the fully-connected end blocks")
    factor_out: bool = option(False, "images: factor out half the channels after each non-last scale")
    squeeze_first: bool = option(False, "images: squeeze before the first scale")
    learned_prior: bool = option(False, "images: learned Gaussian prior over the latent (i-ResNet)")
    preprocess: Preprocess = option("logit", "image preprocessing layer")
    alpha: float = option(0.05, "logit α (0.05 CIFAR/ImageNet, 1e-6 MNIST)")
    estimator: Literal["exact", "truncated", "roulette"] | None = option(
        None, "log-det estimator in training (null: the family default by shape)"
    )
    n_terms: int = option(5, "truncated estimator: number of series terms")
    n_exact_terms: int | None = option(None, "roulette: terms always computed (null: family default)")
    dist: Literal["geometric", "poisson"] | None = option(
        None, "roulette: distribution of N (null: geometric toy, poisson images)"
    )
    geom_p: float = option(0.5, "roulette: geometric p")
    poisson_lambda: float = option(2.0, "roulette: Poisson λ")
    probe: Literal["gaussian", "rademacher"] = option("gaussian", "Hutchinson probe distribution")
    neumann_grad: bool | None = option(None, "Neumann-series gradient (null: off toy, on images)")
    memory_efficient: bool | None = option(None, "memory-efficient backward-in-forward (null: off toy, on images)")
    eval_n_exact_terms: int = option(20, "roulette: exact terms in evaluation")
    solver: Literal["anderson", "plain", "broyden"] = option("anderson", "fixed-point solver of inverses/blocks")
    solver_tol: float = option(1e-6, "solver tolerance on the step (forward)")
    solver_max_iter: int = option(2000, "solver iteration cap (forward)")
    backward_tol: float = option(1e-9, "implicit-differentiation solve tolerance")
    backward_max_iter: int = option(100, "implicit-differentiation iteration cap")
    anderson_memory: int = option(5, "Anderson: past differences kept (1 = Monotone Flows' secant step)")
    backward_direct: bool = option(True, "implicit backward by a direct solve where the exact Jacobian is at hand")

    def validate(self) -> None:
        if self.blocks is not None:
            require(len(self.blocks) >= 1 and min(self.blocks) >= 1, "blocks", self.blocks, "a list of integers >= 1")
        for key in (
            "channels",
            "dense_depth",
            "fc_blocks",
            "fc_hidden",
            "n_terms",
            "solver_max_iter",
            "anderson_memory",
        ):
            require(getattr(self, key) >= 1, key, getattr(self, key), "an integer >= 1")
        if self.coeff is not None:
            require(0 < self.coeff < 1, "coeff", self.coeff, "a number in (0, 1)")
        require(0 < self.lip_coeff <= 1, "lip_coeff", self.lip_coeff, "a number in (0, 1]")
        require(self.cpila_k > 0, "cpila_k", self.cpila_k, "a number > 0")
        require(self.cpila_shift >= 0, "cpila_shift", self.cpila_shift, "a number >= 0")
        require(self.solver_tol > 0 and self.backward_tol > 0, "solver_tol", self.solver_tol, "a number > 0")


@dataclass(frozen=True)
class FamilyDefaults:
    """Values of the shape-dependent (``None``) options: toy first, then images."""

    toy: dict[str, Any]
    image: dict[str, Any]


COMMON_DEFAULTS = FamilyDefaults(
    toy={
        "coeff": 0.9, "power_iterations": 5, "power_tol": None, "dense_growth": 16,
        "start_learnable_concat": 25000, "actnorm": False, "fc_end": False, "estimator": "roulette",
        "n_exact_terms": 2, "dist": "geometric", "neumann_grad": False, "memory_efficient": False,
    },
    image={
        "coeff": 0.98, "power_iterations": None, "power_tol": 1e-3, "dense_growth": 172,
        "start_learnable_concat": 19550, "actnorm": True, "fc_end": True, "estimator": "roulette",
        "n_exact_terms": 2, "dist": "poisson", "neumann_grad": True, "memory_efficient": True,
    },
)  # fmt: skip


def resolved(cfg: LipschitzFlowConfig, is_image: bool, family: FamilyDefaults) -> LipschitzFlowConfig:
    """``cfg`` with every ``None`` replaced by the family's (then the common) toy or image default."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if value is None:
            own = family.image if is_image else family.toy
            common = COMMON_DEFAULTS.image if is_image else COMMON_DEFAULTS.toy
            value = own.get(f.name, common.get(f.name))
        values[f.name] = value
    return dataclasses.replace(cfg, **values)


def logdet_config(cfg: LipschitzFlowConfig) -> LogDetConfig:
    return LogDetConfig(
        kind=cfg.estimator,  # type: ignore[arg-type]
        n_terms=cfg.n_terms,
        n_exact_terms=cfg.n_exact_terms,  # type: ignore[arg-type]
        dist=cfg.dist,  # type: ignore[arg-type]
        geom_p=cfg.geom_p,
        poisson_lambda=cfg.poisson_lambda,
        probe=cfg.probe,
        neumann_grad=bool(cfg.neumann_grad),
        memory_efficient=bool(cfg.memory_efficient),
        eval_n_exact_terms=cfg.eval_n_exact_terms,
    ).validate(prefix="model")


def solver_config(cfg: LipschitzFlowConfig) -> SolverConfig:
    return SolverConfig(
        method=cfg.solver,
        tol=cfg.solver_tol,
        max_iter=cfg.solver_max_iter,
        backward_tol=cfg.backward_tol,
        backward_max_iter=cfg.backward_max_iter,
        anderson_memory=cfg.anderson_memory,
        backward_direct=cfg.backward_direct,
    )


def _activation_params(cfg: LipschitzFlowConfig) -> dict[str, float]:
    return (
        {"k": cfg.cpila_k, "shift": cfg.cpila_shift}
        if cfg.activation == "cpila"
        else ({"k": cfg.cpila_k} if cfg.activation == "pila" else {})
    )


def _concat(cfg: LipschitzFlowConfig) -> dict[str, Any]:
    return {"learnable_concat": cfg.learnable_concat, "start_learnable_concat": int(cfg.start_learnable_concat)}  # type: ignore[arg-type]


def make_branch(
    cfg: LipschitzFlowConfig, branch: Branch, shape: tuple[int, ...], *, fc: bool = False, first: bool = False
) -> nn.Module:
    """The residual branch g for one block on samples of ``shape`` ((d,) or (c, h, w))."""
    act, params = cfg.activation, _activation_params(cfg)
    if len(shape) == 1:
        d = shape[0]
        if branch == "dense":
            growth = cfg.fc_dense_growth if fc else cfg.dense_growth
            common = {"depth": cfg.dense_depth, "growth": growth, "activation": act, "coeff": cfg.coeff}
            common |= {"lip_coeff": cfg.lip_coeff, "conv": False, "activation_params": params} | _concat(cfg)
            if not fc:
                return dense_net(d, d, **common)  # type: ignore[arg-type]
            # i-DenseNet's fully-connected end branch: SNLinear(D → 64), then the dense layers, SNLinear(→ D)
            return nn.Sequential(SpectralLinear(d, 64, coeff=cfg.coeff), dense_net(64, d, **common))  # type: ignore[arg-type]
        hidden = (cfg.fc_hidden, cfg.fc_hidden) if fc else cfg.hidden
        preact = cfg.activation != "sin"  # ImpFlow's toy nets have no activation before the first layer
        return lipschitz_mlp(d, hidden, d, activation=act, coeff=cfg.coeff, preact=preact, activation_params=params)  # type: ignore[arg-type]
    c = shape[0]
    if branch == "dense":
        return dense_net(
            c, c, depth=cfg.dense_depth, growth=cfg.dense_growth, activation=act, coeff=cfg.coeff,  # type: ignore[arg-type]
            lip_coeff=cfg.lip_coeff, conv=True, activation_params=params, **_concat(cfg),
        )  # fmt: skip
    return lipschitz_convnet(
        c, cfg.channels, c, kernels=cfg.kernels, activation=act, coeff=cfg.coeff,  # type: ignore[arg-type]
        preact=not first, activation_params=params,
    )  # fmt: skip


BlockFactory = Callable[[Callable[[], nn.Module]], Transform]


def block_factory(block: BlockType, cfg: LipschitzFlowConfig) -> BlockFactory:
    """``make(new_branch)`` → a block; the implicit block asks for two branches."""
    logdet, solver = logdet_config(cfg), solver_config(cfg)

    def make(new_branch: Callable[[], nn.Module]) -> Transform:
        if block == "monotone":
            return MonotoneBlock(new_branch(), logdet=logdet, solver=solver)
        if block == "implicit":
            return ImplicitBlock(new_branch(), new_branch(), logdet=logdet, solver=solver)
        return ResidualBlock(new_branch(), logdet=logdet, solver=solver)

    return make


def _vector_model(d: int, cfg: LipschitzFlowConfig, branch: Branch, make: BlockFactory) -> Transform:
    n_blocks = sum(cfg.blocks)  # type: ignore[arg-type]
    layers: list[Transform] = []
    for _ in range(n_blocks):
        layers.append(make(lambda: make_branch(cfg, branch, (d,))))
        if cfg.actnorm:
            layers.append(ActNorm(d, init="resflow"))
    return Compose(*layers)


def _scale(
    shape: tuple[int, int, int], index: int, n_scales: int, cfg: LipschitzFlowConfig, branch: Branch, make: BlockFactory
) -> Transform:
    c, h, w = shape
    blocks = cfg.blocks  # type: ignore[assignment]
    layers: list[Transform] = []
    if index == 0 and cfg.actnorm:
        layers.append(ActNorm(c, init="resflow"))
    for b in range(blocks[index]):  # type: ignore[index]
        first = index == 0 and b == 0 and not cfg.squeeze_first
        layers.append(make(lambda first=first: make_branch(cfg, branch, shape, first=first)))
        if cfg.actnorm:
            layers.append(ActNorm(c, init="resflow"))
    if index == n_scales - 1:
        if cfg.fc_end:
            d = c * h * w
            fc: list[Transform] = []
            for _ in range(cfg.fc_blocks):
                fc.append(make(lambda: make_branch(cfg, branch, (d,), fc=True)))
                if cfg.actnorm:
                    fc.append(ActNorm(d, init="resflow"))
            layers.append(Flattened(Compose(*fc), shape))
        return Compose(*layers)
    if cfg.factor_out:
        inner = _scale((2 * c, h // 2, w // 2), index + 1, n_scales, cfg, branch, make)
        layers.append(Squeezed(FactorOut(inner)))
    else:
        layers.append(Squeezed(_scale((4 * c, h // 2, w // 2), index + 1, n_scales, cfg, branch, make)))
    return Compose(*layers)


def _image_model(
    shape: tuple[int, int, int], cfg: LipschitzFlowConfig, branch: Branch, make: BlockFactory
) -> Transform:
    c, h, w = shape
    layers: list[Transform] = []
    pre = preprocessing(cfg.preprocess, cfg.alpha)
    if pre is not None:
        layers.append(pre)
    inner_shape = shape
    if cfg.squeeze_first:
        require(h % 2 == 0 and w % 2 == 0, "squeeze_first", shape, "an image with even height and width")
        inner_shape = (4 * c, h // 2, w // 2)
    _, hh, ww = inner_shape
    n_scales = min(len(cfg.blocks), 1 + halvings(hh, ww, min_size=4))  # type: ignore[arg-type]
    body = _scale(inner_shape, 0, n_scales, cfg, branch, make)
    layers.append(Squeezed(body) if cfg.squeeze_first else body)
    if cfg.learned_prior:
        layers.append(LearnedGaussian(shape))
    return Compose(*layers)


def build_lipschitz_flow(
    shape: tuple[int, ...], cfg: LipschitzFlowConfig, *, family: FamilyDefaults, branch: Branch, block: BlockType
) -> Transform:
    """The transform of a Lipschitz family on ``shape`` (see the module docstring)."""
    is_image = len(shape) == 3
    cfg = resolved(cfg, is_image, family)
    cfg.validate()
    if cfg.blocks is None:  # pragma: no cover - every family sets toy and image blocks
        raise ValueError("blocks must be set")
    make = block_factory(block, cfg)
    model = _image_model(shape, cfg, branch, make) if is_image else _vector_model(shape[0], cfg, branch, make)  # type: ignore[arg-type]
    set_power_budgets(model, train_iterations=cfg.power_iterations, train_tol=cfg.power_tol)
    return model


def register_lipschitz_family(
    name: str,
    config_cls: type[LipschitzFlowConfig],
    *,
    defaults: FamilyDefaults,
    branch: Branch,
    block: BlockType,
    presets: dict[str, dict[str, Any]],
    summary: str,
) -> None:
    """Register ``name`` as the Lipschitz architecture with this branch, block type and defaults."""

    def builder(shape: tuple[int, ...], cfg: Any) -> Transform:
        return build_lipschitz_flow(shape, cfg, family=defaults, branch=branch, block=block)

    register(name, config_cls, presets=presets, summary=summary)(builder)
