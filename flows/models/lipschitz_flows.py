"""One architecture for the five Lipschitz families (i-ResNet, Residual Flow, i-DenseNet, Implicit, Monotone).

A family is (branch g, block type, published defaults). Vectors: ``blocks`` × [block, (ActNorm)]. Images
(Residual Flows' multi-scale model, Chen et al. 2019 §1.6 of the reference): preprocessing (logit α), then per
scale ``blocks[i]`` × [block, ActNorm]; between scales a squeeze (C → 4C), optionally factoring out half the
channels; after the last scale optionally ``fc_blocks`` fully-connected blocks on the flattened tensor, and a
learned Gaussian prior over the whole latent (i-ResNet). Field defaults are the published toy options; each family's
``cifar10`` preset holds its published image options and is the default for images (``nflab models FAMILY``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from ..blocks import ImplicitBlock, MonotoneBlock, ResidualBlock
from ..layers import ActNorm, FactorOut, Flattened, LearnedGaussian, Squeezed
from ..layers.activations import ACTIVATIONS
from ..layers.dense import dense_net
from ..layers.lipschitz import SpectralLinear, set_power_budgets
from ..layers.lipschitz_nets import lipschitz_convnet, lipschitz_mlp
from ..logdet import LogDetConfig
from ..registry import register
from ..solvers import SolverConfig
from ..transform import Compose, Transform
from .common import Preprocess, Search, halvings, option, preprocessing, require

Activation = Literal["lipswish", "clipswish", "cpila", "pila", "elu", "relu", "sin"]
Branch = Literal["mlp", "dense"]
BlockType = Literal["residual", "monotone", "implicit"]


LIPSCHITZ, ESTIMATOR, ACTIVATION, ARCHITECTURE = ("lipschitz",), ("estimator",), ("activation",), ("architecture",)


@dataclass
class LipschitzFlowConfig:
    """The options every Lipschitz family shares (defaults: the published toy ones; images: the ``cifar10`` preset).

    A family adds its branch's options (:class:`MLPBranch` or :class:`DenseBranch`) and changes defaults to its paper's.
    """

    blocks: tuple[int, ...] = option((100,), "vectors: (n,) blocks; images: blocks per scale", ge=1)
    activation: Activation = option(
        "lipswish", "activation of the branch (cpila/clipswish double the channels)", spaces=ACTIVATION
    )
    cpila_k: float = option(
        5.0, "CPila/Pila exponent k (the normaliser is derived so that Lip <= 1)", gt=0,
        search=Search(1.0, 10.0), spaces=ACTIVATION,
    )  # fmt: skip
    cpila_shift: float = option(0.2, "CPila branch shift", ge=0, le=10, search=Search(0.0, 1.0), spaces=ACTIVATION)
    coeff: float = option(
        0.9, "Lipschitz coefficient c of every layer (soft normalisation W/max(1, σ/c))", gt=0, lt=1,
        search=Search(0.5, 0.99), spaces=LIPSCHITZ,
    )  # fmt: skip
    power_iterations: int | None = option(
        5, "power iterations after each step (null: to power_tol)", ge=1, le=1000,
        search=Search(1, 20), spaces=LIPSCHITZ,
    )  # fmt: skip
    power_tol: float | None = option(None, "power-iteration tolerance after each step (null: none)", gt=0)
    actnorm: bool = option(False, "ActNorm after every block")
    fc_end: bool = option(False, "images: fully-connected blocks after the last scale")
    fc_blocks: int = option(4, "images: number of fully-connected end blocks", ge=1, le=1000)
    factor_out: bool = option(False, "images: factor out half the channels after each non-last scale")
    squeeze_first: bool = option(False, "images: squeeze before the first scale")
    learned_prior: bool = option(False, "images: learned Gaussian prior over the latent (i-ResNet)")
    preprocess: Preprocess = option("logit", "image preprocessing layer")
    alpha: float = option(0.05, "logit α (0.05 CIFAR/ImageNet, 1e-6 MNIST)", ge=0, lt=0.5)
    estimator: Literal["exact", "truncated", "roulette"] = option(
        "roulette", "log-det estimator in training: exact (small D), truncated series (biased), Russian roulette",
        spaces=ESTIMATOR,
    )  # fmt: skip
    n_terms: int = option(5, "truncated: number of series terms", ge=1, le=1000, search=Search(1, 20), spaces=ESTIMATOR)
    n_exact_terms: int = option(
        2, "roulette: terms always computed", ge=0, le=1000, search=Search(0, 10), spaces=ESTIMATOR
    )
    dist: Literal["geometric", "poisson"] = option("geometric", "roulette: distribution of N", spaces=ESTIMATOR)
    geom_p: float = option(0.5, "roulette: geometric p", gt=0, lt=1, search=Search(0.1, 0.9), spaces=ESTIMATOR)
    poisson_lambda: float = option(2.0, "roulette: Poisson λ", gt=0, le=100, search=Search(0.5, 5.0), spaces=ESTIMATOR)
    probe: Literal["gaussian", "rademacher"] = option("gaussian", "Hutchinson probe distribution", spaces=ESTIMATOR)
    n_probes: int = option(1, "Hutchinson probes per estimate", ge=1, le=1000)
    neumann_grad: bool = option(False, "Neumann-series gradient")
    memory_efficient: bool = option(False, "memory-efficient backward-in-forward")
    eval_n_exact_terms: int = option(20, "roulette: exact terms in evaluation", ge=0, le=1000)
    solver: Literal["anderson", "plain", "broyden"] = option("anderson", "fixed-point solver of inverses/blocks")
    solver_tol: float = option(1e-6, "solver tolerance on the step (forward)", gt=0)
    solver_max_iter: int = option(2000, "solver iteration cap (forward)", ge=1, le=10**6)
    backward_tol: float = option(1e-9, "implicit-differentiation solve tolerance", gt=0)
    backward_max_iter: int = option(100, "implicit-differentiation iteration cap", ge=1, le=10**6)
    anderson_memory: int = option(5, "Anderson: past differences kept (1 = Monotone Flows' secant step)", ge=1, le=100)
    backward_direct: bool = option(True, "implicit backward by a direct solve where the exact Jacobian is at hand")


@dataclass
class MLPBranch:
    """Options of the MLP (vectors) / conv (images) branch: i-ResNet, Residual Flows, Implicit flows."""

    hidden: tuple[int, ...] = option((128, 128, 128, 128), "vectors: hidden widths of the MLP branch", ge=1, le=65536)
    channels: int = option(512, "images: hidden channels of the conv branch", ge=1, le=65536)
    kernels: tuple[int, ...] = option((3, 1, 3), "images: kernel sizes of the conv branch", ge=1, le=31)
    fc_hidden: int = option(128, "images: hidden width of the fully-connected end blocks", ge=1, le=65536)


@dataclass
class DenseBranch:
    """Options of the dense branch (i-DenseNets, Monotone Flows)."""

    dense_depth: int = option(3, "dense branch: number of dense layers", ge=1, le=100)
    dense_growth: int = option(16, "dense branch: growth per layer", ge=1, le=65536)
    fc_dense_growth: int = option(32, "images: growth of the dense fully-connected end blocks", ge=1, le=65536)
    lip_coeff: float = option(
        0.98, "dense branch: Lipschitz coefficient of the learnable concatenation", gt=0, le=1,
        search=Search(0.9, 1.0), spaces=LIPSCHITZ,
    )  # fmt: skip
    learnable_concat: bool = option(True, "dense branch: learnable concatenation weights")
    start_learnable_concat: int = option(
        25000, "dense branch: optimiser steps with the concatenation fixed (images: 19550 ≈ 25 CIFAR-10 epochs)", ge=0
    )

    def validate(self) -> None:
        """A channel-doubling activation (CLipSwish, CPila) splits each layer's growth in two halves."""
        if ACTIVATIONS[self.activation].doubles_channels:  # type: ignore[attr-defined]
            for key in ("dense_growth", "fc_dense_growth"):
                value = getattr(self, key)
                require(value % 2 == 0, key, value, f"an even integer (activation {self.activation} doubles channels)")  # type: ignore[attr-defined]


def images_preset(branch: Branch, **family: Any) -> dict[str, Any]:
    """The published CIFAR-10 options shared by the Lipschitz families (Residual Flows' image model), with the
    family's own on top."""
    common: dict[str, Any] = {
        "blocks": (16, 16, 16), "coeff": 0.98, "power_iterations": None, "power_tol": 1e-3, "actnorm": True,
        "fc_end": True, "estimator": "roulette", "dist": "poisson", "neumann_grad": True, "memory_efficient": True,
    }  # fmt: skip
    if branch == "dense":
        common |= {"dense_growth": 172, "start_learnable_concat": 19550}
    return common | family


#: the published image settings per dataset on top of the CIFAR-10 ones (Residual Flows' and Monotone Flows'
#: README commands): MNIST changes the logit α; ImageNet32 stacks 32-32-32 blocks; ImageNet64 also squeezes first
#: and factors out half the channels after each non-last scale.
DATASET_CHANGES: dict[str, dict[str, Any]] = {
    "mnist": {"alpha": 1e-6},
    "imagenet32": {"blocks": (32, 32, 32)},
    "imagenet64": {"blocks": (32, 32, 32), "squeeze_first": True, "factor_out": True},
}


def dataset_presets(
    branch: Branch, datasets: tuple[str, ...] = ("mnist", "imagenet32", "imagenet64"), **family: Any
) -> dict[str, dict[str, Any]]:
    """``cifar10`` (:func:`images_preset`) and the published preset of each of ``datasets``: CIFAR-10's options with
    :data:`DATASET_CHANGES` of that dataset on top (a family's own changes go in its ``family`` options, applied to
    every dataset, or are added to the returned presets)."""
    cifar = images_preset(branch, **family)
    return {"cifar10": cifar, **{name: cifar | DATASET_CHANGES[name] for name in datasets}}


def logdet_config(cfg: LipschitzFlowConfig) -> LogDetConfig:
    return LogDetConfig(
        kind=cfg.estimator,  # type: ignore[arg-type]
        n_terms=cfg.n_terms,
        n_exact_terms=cfg.n_exact_terms,
        dist=cfg.dist,
        geom_p=cfg.geom_p,
        poisson_lambda=cfg.poisson_lambda,
        probe=cfg.probe,
        n_probes=cfg.n_probes,
        neumann_grad=cfg.neumann_grad,
        memory_efficient=cfg.memory_efficient,
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


def build_lipschitz_flow(shape: tuple[int, ...], cfg: Any, *, branch: Branch, block: BlockType) -> Transform:
    """The transform of a Lipschitz family on ``shape`` (see the module docstring)."""
    is_image = len(shape) == 3
    make = block_factory(block, cfg)
    model = _image_model(shape, cfg, branch, make) if is_image else _vector_model(shape[0], cfg, branch, make)  # type: ignore[arg-type]
    set_power_budgets(model, train_iterations=cfg.power_iterations, train_tol=cfg.power_tol)
    return model


def register_lipschitz_family(
    name: str,
    config_cls: type[LipschitzFlowConfig],
    *,
    branch: Branch,
    block: BlockType,
    presets: dict[str, dict[str, Any]],
    summary: str,
) -> None:
    """Register ``name`` as the Lipschitz architecture with this branch and block type; ``presets`` must hold
    ``cifar10`` (the published image model, the default for images). Implicit and monotone blocks solve fixed points:
    their family asks for TF32 off."""

    def builder(shape: tuple[int, ...], cfg: Any) -> Transform:
        return build_lipschitz_flow(shape, cfg, branch=branch, block=block)

    register(
        name, config_cls, presets=presets, summary=summary, by_data={"images": "cifar10"},
        tf32_off=block in ("implicit", "monotone"),
    )(builder)  # fmt: skip
