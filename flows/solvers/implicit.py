"""Implicit differentiation of w* = (I + h_θ)^{-1}(b) — never backpropagation through solver iterations.

From w* + h_θ(w*) = b: dw* = (I + J_h(w*))^{-1}(db − ∂h/∂θ dθ). With a proxy p = b − h_θ(w*) (w* detached; value
w*), the backward solves uᵀ(I + J_h(w*)) = ḡᵀ by the fixed point u ← ḡ − uᵀJ_h(w*) and hands u to p, so that
dL/db = u and dL/dθ = −uᵀ∂h/∂θ (Bai et al., 2019; Lu et al., 2021; Ahn et al., 2022).
When the block has already computed the exact per-example Jacobian J_h(w*) (small inputs, exact log-det), it hands
it over in a :class:`JacobianSlot` and the backward solves (I + J)ᵀu = ḡ directly instead of iterating.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .config import SolverConfig
from .errors import SolverReport
from .fixed_point import fixed_point
from .resolvent import resolvent


@dataclass
class JacobianSlot:
    """Where one forward call leaves the exact J_h(w*) ``[batch, D, D]`` (J[b, i, j] = ∂h_i/∂w_j) for its backward.

    One slot per call, so that a second forward before the first backward cannot swap Jacobians.
    """

    value: Tensor | None = None


def direct_transpose_solve(jacobian: Tensor, grad_w: Tensor) -> Tensor:
    """u with (I + J)ᵀu = ḡ per example, by a batched LU solve."""
    batch, dim = jacobian.shape[0], jacobian.shape[-1]
    system = torch.eye(dim, dtype=jacobian.dtype, device=jacobian.device) + jacobian.transpose(1, 2)
    solution = torch.linalg.solve(system, grad_w.reshape(batch, dim, 1).to(jacobian.dtype))
    return solution.reshape(grad_w.shape).to(grad_w.dtype)


class ImplicitGradient(torch.autograd.Function):
    """Identity in the forward pass; backward maps ḡ to u = (I + J_h(w*))^{-T} ḡ (VJPs through ``h_frozen``, or a
    direct solve when ``slot`` holds the exact Jacobian and ``config.backward_direct`` is on)."""

    @staticmethod
    def forward(
        ctx: Any,
        proxy: Tensor,
        h_frozen: Callable[[Tensor], Tensor],
        w_star: Tensor,
        config: SolverConfig,
        slot: JacobianSlot | None = None,
    ) -> Tensor:
        ctx.h_frozen, ctx.config, ctx.slot = h_frozen, config, slot
        ctx.save_for_backward(w_star)
        return proxy.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_w: Tensor) -> tuple[Tensor | None, None, None, None, None]:
        (w_star,) = ctx.saved_tensors
        config: SolverConfig = ctx.config
        slot: JacobianSlot | None = ctx.slot
        if config.backward_direct and slot is not None and slot.value is not None:
            return direct_transpose_solve(slot.value, grad_w), None, None, None, None
        with torch.enable_grad():
            w_leaf = w_star.detach().requires_grad_(True)
            hw = ctx.h_frozen(w_leaf)

        def transpose_step(u: Tensor) -> Tensor:
            (u_jac,) = torch.autograd.grad(hw, w_leaf, u, retain_graph=True, allow_unused=True)
            return grad_w if u_jac is None else grad_w - u_jac

        u, _ = fixed_point(
            transpose_step,
            grad_w,
            tol=config.backward_tol,
            max_iter=config.backward_max_iter,
            method=config.method,
            memory=config.anderson_memory,
        )
        return u, None, None, None, None


def implicit_resolvent(
    h: Callable[[Tensor], Tensor],
    h_frozen: Callable[[Tensor], Tensor],
    b: Tensor,
    config: SolverConfig,
    *,
    x0: Tensor | None = None,
    jacobian: JacobianSlot | None = None,
) -> tuple[Tensor, SolverReport]:
    """w* = (I + h)^{-1}(b) with exact implicit gradients to b and to h's parameters.

    ``h_frozen`` computes the same map as ``h`` with no parameters requiring grad (e.g. a deep copy holding the
    current, already normalised weights); the solves run through it, the proxy b − h(w*) through the real ``h``.
    ``jacobian``: a slot the caller fills with J_h(w*) before the backward, for the direct backward solve.
    """
    w_star, report = resolvent(h_frozen, b, config, x0=x0)
    proxy = b - h(w_star)
    if not proxy.requires_grad:
        return proxy, report
    return ImplicitGradient.apply(proxy, h_frozen, w_star, config, jacobian), report
