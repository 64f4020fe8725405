"""Two-block maps ℝ → ℝ of the 1-D fitting experiment (Monotone Flows, Fig. 4): which slopes can each formulation reach?

With Lip(g) ≤ L < 1 a residual block x + g(x) has slopes in (1 − L, 1 + L), an inverse-residual block (Id + g)^{-1}
in (1/(1 + L), 1/(1 − L)) and a monotone block (Id + G)^{-1}(2x) − x in ((1 − L)/(1 + L), (1 + L)/(1 − L)); a
learnable scale a = exp(log a) > 0 multiplies a block's output (R⁺, I⁺, M⁺). Variants, applied right to left:
R∘R, R⁺R∘R⁺R, R⁺I∘R⁺R and R⁺M∘R⁺M, built from the shared blocks and Lipschitz branches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ..blocks import MonotoneBlock, ResidualBlock
from ..layers.dense import dense_net
from ..layers.lipschitz_nets import lipschitz_mlp
from ..logdet import LogDetConfig
from ..solvers import SolverConfig
from ..transform import Compose, LogdetKind, Transform

FIT1D_VARIANTS: tuple[str, ...] = ("residual", "scaled_residual", "scaled_inverse_residual", "scaled_monotone")
VARIANT_LABELS: dict[str, str] = {
    "residual": "R∘R",
    "scaled_residual": "R⁺R∘R⁺R",
    "scaled_inverse_residual": "R⁺I∘R⁺R",
    "scaled_monotone": "R⁺M∘R⁺M",
}
BRANCHES: tuple[str, ...] = ("mlp", "dense")


class Inverted(Transform):
    """f⁻¹ as a transform: forward is ``inner.inverse`` (a fixed-point solve), log-det −log|det J_f| at the result."""

    def __init__(self, inner: Transform) -> None:
        super().__init__()
        self.inner = inner

    @property
    def kind(self) -> LogdetKind:
        return self.inner.kind

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = self.inner.inverse(x)
        _, logdet = self.inner(z)
        return z, -logdet

    def inverse(self, z: Tensor) -> Tensor:
        return self.inner(z)[0]


class Scaled(Transform):
    """x ↦ a·f(x) with a learnable a = exp(log a) > 0 (initially 1); log-det gains D·log a."""

    def __init__(self, inner: Transform) -> None:
        super().__init__()
        self.inner = inner
        self.log_scale = nn.Parameter(torch.zeros(()))

    @property
    def kind(self) -> LogdetKind:
        return self.inner.kind

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y, logdet = self.inner(x)
        dim = y[0].numel()
        return self.log_scale.exp() * y, logdet + dim * self.log_scale

    def inverse(self, z: Tensor) -> Tensor:
        return self.inner.inverse(z * torch.exp(-self.log_scale))


def _branch_factory(
    branch: str,
    *,
    activation: str,
    coeff: float,
    hidden: Sequence[int],
    dense_depth: int,
    dense_growth: int,
    lip_coeff: float,
) -> Callable[[], nn.Module]:
    if branch == "mlp":
        return lambda: lipschitz_mlp(1, tuple(hidden), 1, activation=activation, coeff=coeff)
    if branch == "dense":
        return lambda: dense_net(
            1, 1, depth=dense_depth, growth=dense_growth, activation=activation, coeff=coeff, lip_coeff=lip_coeff,
            conv=False,
        )  # fmt: skip
    raise ValueError(f"branch must be one of: {', '.join(BRANCHES)}; got {branch!r}")


def build_fit1d(
    variant: str,
    *,
    branch: str = "dense",
    activation: str = "cpila",
    coeff: float = 0.98,
    hidden: Sequence[int] = (64, 64),
    dense_depth: int = 3,
    dense_growth: int = 16,
    lip_coeff: float = 0.99,
    solver: SolverConfig | None = None,
) -> Compose:
    """The two-block map of ``variant`` (one of ``FIT1D_VARIANTS``) on 1-D inputs ``[batch, 1]``.

    Every block has its own branch g: ``lipschitz_mlp(1, hidden, 1)`` or ``dense_net(1, 1, depth, growth)`` with
    Lipschitz coefficient ``coeff``. Log-dets are exact (one vector–Jacobian product in 1-D); inverse-residual and
    monotone blocks solve their fixed points with ``solver`` and differentiate implicitly.
    """
    if variant not in FIT1D_VARIANTS:
        raise ValueError(f"variant must be one of: {', '.join(FIT1D_VARIANTS)}; got {variant!r}")
    new_branch = _branch_factory(
        branch,
        activation=activation,
        coeff=coeff,
        hidden=hidden,
        dense_depth=dense_depth,
        dense_growth=dense_growth,
        lip_coeff=lip_coeff,
    )
    logdet, solver = LogDetConfig(kind="exact"), solver or SolverConfig()

    def residual() -> Transform:
        return ResidualBlock(new_branch(), logdet=logdet, solver=solver)

    def monotone() -> Transform:
        return MonotoneBlock(new_branch(), logdet=logdet, solver=solver)

    builders: dict[str, Callable[[], tuple[Transform, Transform]]] = {
        "residual": lambda: (residual(), residual()),
        "scaled_residual": lambda: (Scaled(residual()), Scaled(residual())),
        "scaled_inverse_residual": lambda: (Scaled(residual()), Scaled(Inverted(residual()))),
        "scaled_monotone": lambda: (Scaled(monotone()), Scaled(monotone())),
    }
    return Compose(*builders[variant]())


def slope_range(lipschitz: float, variant: str) -> tuple[float, float]:
    """Slopes reachable by ``variant`` when every branch is L-Lipschitz (scales fixed to 1): (min, max) of f'."""
    if not 0.0 <= lipschitz < 1.0:
        raise ValueError(f"lipschitz must be in [0, 1), got {lipschitz!r}")
    lip = lipschitz
    block = {
        "residual": (1 - lip, 1 + lip),
        "inverse_residual": (1 / (1 + lip), 1 / (1 - lip)),
        "monotone": ((1 - lip) / (1 + lip), (1 + lip) / (1 - lip)),
    }
    pairs = {
        "residual": ("residual", "residual"),
        "scaled_residual": ("residual", "residual"),
        "scaled_inverse_residual": ("residual", "inverse_residual"),
        "scaled_monotone": ("monotone", "monotone"),
    }
    if variant not in pairs:
        raise ValueError(f"variant must be one of: {', '.join(FIT1D_VARIANTS)}; got {variant!r}")
    first, second = (block[name] for name in pairs[variant])
    return first[0] * second[0], first[1] * second[1]


__all__ = ["BRANCHES", "FIT1D_VARIANTS", "VARIANT_LABELS", "Inverted", "Scaled", "build_fit1d", "slope_range"]
