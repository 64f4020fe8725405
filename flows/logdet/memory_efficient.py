"""Memory-efficient "backward-in-forward" log-det (Chen et al., 2019, §3.3): O(1) memory in the number of terms.

The forward pass estimates the log-det with a graph, immediately takes ∂(Σ_b logdet_b)/∂(x, θ), keeps only those
gradients and frees the graph. Backward: dL/dx_b = s_b ∂logdet_b/∂x_b + VJP of g, dL/dθ = s ∂Σ logdet/∂θ + VJP of
g, exact only when every upstream s_b equals one common s (an equally weighted batch mean) — otherwise an error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

Estimate = Callable[[Callable[[Tensor], Tensor], Tensor], tuple[Tensor, Tensor]]


class UnequalUpstreamGradientError(RuntimeError):
    """The memory-efficient backward was asked for θ-gradients of a loss that weights samples unequally."""


class _GradientInForward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, estimate: Estimate, g: Callable[[Tensor], Tensor], x: Tensor, *params: Tensor) -> Any:
        with torch.enable_grad():
            x_leaf = x.detach().requires_grad_(True)
            gx, logdet = estimate(g, x_leaf)
            wrt = [x_leaf, *params]
            if logdet.requires_grad:
                grads = torch.autograd.grad(logdet.sum(), wrt, allow_unused=True)
            else:
                grads = (None,) * len(wrt)
        ctx.g = g
        ctx.params = params
        ctx.logdet_grads = [torch.zeros_like(t) if gr is None else gr.detach() for t, gr in zip(wrt, grads)]
        ctx.save_for_backward(x)
        return gx.detach(), logdet.detach()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_gx: Tensor, grad_logdet: Tensor) -> tuple[Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        params: tuple[Tensor, ...] = ctx.params
        need_x = ctx.needs_input_grad[2]
        need_params = [bool(n) for n in ctx.needs_input_grad[3:]]
        stored_x, *stored_params = ctx.logdet_grads
        grad_x = stored_x * grad_logdet.reshape(-1, *([1] * (x.dim() - 1))) if need_x else None
        grad_params: list[Tensor | None] = [None] * len(params)
        if any(need_params):
            common = grad_logdet.reshape(-1)[:1]
            if not torch.allclose(grad_logdet, common.expand_as(grad_logdet), rtol=1e-6, atol=0.0):
                raise UnequalUpstreamGradientError(
                    "memory-efficient log-det backward needs the same upstream gradient for every sample's log-det "
                    f"(an equally weighted batch mean), got values from {grad_logdet.min().item():.3g} to "
                    f"{grad_logdet.max().item():.3g}; set estimator.memory_efficient False for this loss"
                )
            grad_params = [s * common.squeeze(0) if need else None for s, need in zip(stored_params, need_params)]
        wrt_params = [p for p, need in zip(params, need_params) if need]
        if need_x or wrt_params:
            with torch.enable_grad():
                x_leaf = x.detach().requires_grad_(True)
                gx = ctx.g(x_leaf)
                vjps = torch.autograd.grad(gx, [x_leaf, *wrt_params], grad_gx, allow_unused=True)
            if need_x and vjps[0] is not None:
                grad_x = grad_x + vjps[0]
            extra = iter(vjps[1:])
            for i, need in enumerate(need_params):
                if need:
                    vj = next(extra)
                    if vj is not None:
                        grad_params[i] = grad_params[i] + vj
        return (None, None, grad_x, *grad_params)


def memory_efficient_logdet(
    estimate: Estimate, g: Callable[[Tensor], Tensor], x: Tensor, params: Sequence[Tensor]
) -> tuple[Tensor, Tensor]:
    """(g(x), logdet) whose backward uses gradients computed during the forward pass; ``params`` are g's θ.

    ``estimate(g, x_leaf) -> (g(x_leaf), logdet)`` must build a graph to ``x_leaf`` and to ``params``.
    """
    return _GradientInForward.apply(estimate, g, x, *params)
