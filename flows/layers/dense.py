"""i-DenseNet's Lipschitz dense layer and residual branch (Perugachi-Diaz et al. 2021, "Invertible DenseNets").

x ↦ [η₁x, η₂·net(x)] along dim 1 with ηᵢ = (softplus(Kᵢ) + 0.1)/√Σⱼ(softplus(Kⱼ) + 0.1)² · c, so η₁² + η₂² = c²
and Lip ≤ √(η₁² + η₂²·Lip(net)²) ≤ c·max(1, Lip(net)). The branch g stacks such layers (each adds ``growth``
channels) and ends with a Lipschitz 1×1 map back to the input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .activations import make_activation
from .lipschitz import SpectralConv2d, SpectralLinear, check_positive_int, check_positive_number

CONCAT_OFFSET = 0.1
"""Added to softplus(Kᵢ) so that neither branch of the concatenation can be switched off completely."""


class LipschitzDenseLayer(nn.Module):
    """[η₁x, η₂·network(x)] with η₁² + η₂² = lip_coeff²; K₁ = K₂ = 1 at start (learnable or fixed).

    The learnable-concatenation schedule: ``after_optimizer_step`` resets K₁, K₂ to 1 while fewer than
    ``start_learnable_concat`` optimizer steps have been taken (counted in the persistent buffer ``steps``, so a
    resumed checkpoint continues the schedule); from then on they train freely. 0 = learnable from the start.
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        learnable_concat: bool = True,
        lip_coeff: float = 0.98,
        start_learnable_concat: int = 0,
    ) -> None:
        super().__init__()
        self.network = network
        self.learnable_concat = bool(learnable_concat)
        self.lip_coeff = check_positive_number("lip_coeff", lip_coeff)
        if isinstance(start_learnable_concat, bool) or not isinstance(start_learnable_concat, int):
            raise ValueError(f"start_learnable_concat must be an integer ≥ 0, got {start_learnable_concat!r}")
        if start_learnable_concat < 0:
            raise ValueError(f"start_learnable_concat must be an integer ≥ 0, got {start_learnable_concat!r}")
        self.start_learnable_concat = start_learnable_concat
        if self.learnable_concat:
            self.k1 = nn.Parameter(torch.tensor(1.0))
            self.k2 = nn.Parameter(torch.tensor(1.0))
        else:
            self.register_buffer("k1", torch.tensor(1.0))
            self.register_buffer("k2", torch.tensor(1.0))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.frozen = False
        self.register_buffer("frozen_eta", None, persistent=False)

    def eta(self) -> tuple[Tensor, Tensor]:
        """(η₁, η₂): the weights of the input and of the network output."""
        if self.frozen:
            return self.frozen_eta[0], self.frozen_eta[1]
        s1 = F.softplus(self.k1) + CONCAT_OFFSET
        s2 = F.softplus(self.k2) + CONCAT_OFFSET
        norm = torch.sqrt(s1 * s1 + s2 * s2)
        return s1 / norm * self.lip_coeff, s2 / norm * self.lip_coeff

    def forward(self, x: Tensor) -> Tensor:
        out = self.network(x)
        eta1, eta2 = self.eta()
        return torch.cat([eta1 * x, eta2 * out], dim=1)

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """One optimizer step done: reset K₁, K₂ to 1 while steps < ``start_learnable_concat``."""
        if self.frozen:
            return
        if int(self.steps) < self.start_learnable_concat:
            self.k1.fill_(1.0)
            self.k2.fill_(1.0)
        self.steps.add_(1)

    @torch.no_grad()
    def freeze_(self) -> LipschitzDenseLayer:
        """Fix η at its current value (used by ``frozen.frozen_copy`` on a deep copy); K no longer requires grad."""
        if not self.frozen:
            eta1, eta2 = self.eta()
            self.frozen_eta = torch.stack([eta1, eta2])
            self.frozen = True
        for parameter in self.parameters(recurse=False):
            parameter.requires_grad_(False)
        return self

    @torch.no_grad()
    def refreeze_from_(self, source: LipschitzDenseLayer) -> None:
        """Frozen again at ``source``'s current η (used by ``frozen.FrozenMirror``)."""
        eta1, eta2 = source.eta()
        self.frozen_eta = torch.stack([eta1, eta2])
        self.frozen = True

    def extra_repr(self) -> str:
        return (
            f"learnable_concat={self.learnable_concat}, lip_coeff={self.lip_coeff}, "
            f"start_learnable_concat={self.start_learnable_concat}{', frozen' if self.frozen else ''}"
        )


def dense_net(
    d_in: int,
    d_out: int,
    *,
    depth: int,
    growth: int,
    activation: str,
    coeff: float,
    lip_coeff: float,
    conv: bool,
    kernel_size: int = 3,
    activation_params: dict | None = None,
    zero_init_last: bool = False,
    learnable_concat: bool = True,
    start_learnable_concat: int = 0,
) -> nn.Sequential:
    """i-DenseNet residual branch: ``depth`` × dense[Spectral(total → growth or growth/2) → act], Spectral(→ d_out).

    ``growth/2`` when the activation doubles the channels (CLipSwish, CPila), so each dense layer adds ``growth``.
    Vectors (conv=False): ``SpectralLinear``; images: ``SpectralConv2d`` k×k with padding k//2 inside the dense
    layers and a 1×1 at the end. Lip(g) ≤ lip_coeff^depth · coeff when coeff ≤ 1.
    """
    d_in = check_positive_int("d_in", d_in)
    d_out = check_positive_int("d_out", d_out)
    check_positive_int("depth", depth)
    check_positive_int("growth", growth)
    check_positive_int("kernel_size", kernel_size)
    if conv and kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd (padding k//2 keeps the image size), got {kernel_size}")
    params = dict(activation_params or {})
    layers: list[nn.Module] = []
    total = d_in
    for _ in range(depth):
        act = make_activation(activation, **params)
        if act.doubles_channels and growth % 2:
            raise ValueError(f"growth must be even for the channel-doubling activation {activation!r}, got {growth}")
        width = growth // 2 if act.doubles_channels else growth
        if conv:
            inner: nn.Module = SpectralConv2d(total, width, kernel_size, padding=kernel_size // 2, coeff=coeff)
        else:
            inner = SpectralLinear(total, width, coeff=coeff)
        layers.append(
            LipschitzDenseLayer(
                nn.Sequential(inner, act),
                learnable_concat=learnable_concat,
                lip_coeff=lip_coeff,
                start_learnable_concat=start_learnable_concat,
            )
        )
        total += growth
    if conv:
        layers.append(SpectralConv2d(total, d_out, 1, coeff=coeff, zero_init=zero_init_last))
    else:
        layers.append(SpectralLinear(total, d_out, coeff=coeff, zero_init=zero_init_last))
    return nn.Sequential(*layers)


__all__ = ["CONCAT_OFFSET", "LipschitzDenseLayer", "dense_net"]
