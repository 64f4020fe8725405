"""Divergence of a vector field, div f = tr(∂f/∂z): exact from D vector–Jacobian products, or Hutchinson's
unbiased estimate εᵀ(∂f/∂z)ε with E[εεᵀ] = I (Hutchinson 1989; FFJORD, Grathwohl et al. 2019, §3.1).

Both optionally return the squared Frobenius norm ‖∂f/∂z‖_F² of the same Jacobian (exact, or the unbiased
‖εᵀ ∂f/∂z‖² with the same ε) — the Jacobian regulariser of Finlay et al. 2020. The field acts on every sample
of the batch separately, so one VJP with a batch of vectors gives one row (or one ε-projection) per sample.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

DivergenceKind = Literal["brute_force", "hutchinson"]
NoiseKind = Literal["gaussian", "rademacher"]
NOISE_KINDS: tuple[str, ...] = ("gaussian", "rademacher")


def sample_noise(like: Tensor, kind: NoiseKind = "gaussian", generator: torch.Generator | None = None) -> Tensor:
    """ε with the shape, dtype and device of ``like``: N(0, I) or Rademacher (±1 with probability ½ each)."""
    if kind == "gaussian":
        return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
    if kind == "rademacher":
        bits = torch.randint(0, 2, like.shape, generator=generator, device=like.device)
        return bits.to(like.dtype).mul_(2).sub_(1)
    raise ValueError(f"noise: {kind!r} is not one of: {', '.join(NOISE_KINDS)}")


def exact_divergence(
    f: Tensor, z: Tensor, *, frobenius: bool = False, create_graph: bool = True
) -> tuple[Tensor, Tensor | None]:
    """Σ_i ∂f_i/∂z_i per sample from the D rows of the Jacobian (one batched VJP), and ‖∂f/∂z‖_F² if asked.

    ``f`` must have been computed from ``z`` with gradients enabled; ``create_graph`` keeps the result
    differentiable (training), ``False`` is enough when nothing is backpropagated through it.
    """
    batch, dim = z.shape[0], z[0].numel()
    basis = torch.eye(dim, dtype=z.dtype, device=z.device).reshape(dim, 1, *z.shape[1:])
    basis = basis.expand(dim, *z.shape)
    rows = torch.autograd.grad(f, z, basis, create_graph=create_graph, is_grads_batched=True)[0]
    rows = rows.reshape(dim, batch, dim)  # rows[i, b] = e_iᵀ J_b
    divergence = rows.diagonal(dim1=0, dim2=2).sum(dim=1)
    return divergence, rows.pow(2).sum(dim=(0, 2)) if frobenius else None


def hutchinson_divergence(
    f: Tensor, z: Tensor, noise: Tensor, *, frobenius: bool = False, create_graph: bool = True
) -> tuple[Tensor, Tensor | None]:
    """εᵀ(∂f/∂z)ε per sample from one VJP (unbiased for any ε with E[εεᵀ] = I), and ‖εᵀ ∂f/∂z‖² if asked."""
    projected = torch.autograd.grad(f, z, noise, create_graph=create_graph)[0]
    divergence = (projected * noise).reshape(z.shape[0], -1).sum(dim=1)
    return divergence, projected.pow(2).reshape(z.shape[0], -1).sum(dim=1) if frobenius else None
