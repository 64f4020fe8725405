"""Divergence of a vector field, div f = tr(∂f/∂z): exact from the D Jacobian rows, or Hutchinson's unbiased
estimate εᵀ(∂f/∂z)ε with E[εεᵀ] = I from one VJP (Hutchinson 1989; FFJORD, Grathwohl et al. 2019, §3.1).

Both optionally return the squared Frobenius norm ‖∂f/∂z‖_F² of the same Jacobian (exact, or the unbiased
‖εᵀ ∂f/∂z‖² with the same ε) — the Jacobian regulariser of Finlay et al. 2020. The VJPs, the per-example
Jacobian and the probes are the shared ones of ``nflab.flows.logdet`` (the field is batch-independent).
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from ..logdet.exact import batch_jacobian
from ..logdet.vjp import batch_dot, vjp

DivergenceKind = Literal["brute_force", "hutchinson"]
DIVERGENCES: tuple[str, ...] = ("brute_force", "hutchinson")


def exact_divergence(
    f: Tensor, z: Tensor, *, frobenius: bool = False, create_graph: bool = True
) -> tuple[Tensor, Tensor | None]:
    """Σ_i ∂f_i/∂z_i per sample from the full Jacobian (D VJPs), and ‖∂f/∂z‖_F² if asked.

    ``f`` must have been computed from ``z`` with gradients enabled; ``create_graph`` keeps the result
    differentiable (training); ``False`` is enough when nothing is backpropagated through it.
    """
    jac = batch_jacobian(f, z, create_graph=create_graph)
    divergence = jac.diagonal(dim1=1, dim2=2).sum(dim=1)
    return divergence, jac.pow(2).sum(dim=(1, 2)) if frobenius else None


def hutchinson_divergence(
    f: Tensor, z: Tensor, noise: Tensor, *, frobenius: bool = False, create_graph: bool = True
) -> tuple[Tensor, Tensor | None]:
    """εᵀ(∂f/∂z)ε per sample from one VJP (unbiased for any ε with E[εεᵀ] = I), and ‖εᵀ ∂f/∂z‖² if asked."""
    projected = vjp(f, z, noise, create_graph=create_graph)
    return batch_dot(projected, noise), batch_dot(projected, projected) if frobenius else None
