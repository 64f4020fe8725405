"""Jacobian products through a branch at one multiplication per activation: a'(h) is computed once per forward.

For an elementwise activation y = a(h), vᵀ∂y/∂h = (v ⊙ a'(h))ᵀ; for a channel-doubling one, y = [a₁(h), a₂(h)] along
dim 1, the two halves of v ⊙ [a₁'(h), a₂'(h)] are summed. Autograd's own backward of a composite activation (LipSwish
x·σ(βx)/1.1, CPila's clamped polynomial·exp) rebuilds a'(h) from its pieces at every vector–Jacobian product and,
under ``create_graph``, records all of them for the log-det gradient; the power series Σ_k c_k vᵀJ^k v (Chen et al.,
2019) takes k such products per block. :func:`derivative_cached` runs a branch so that each activation's backward is
one product with a'(h) from the activation's ``derivative``, computed once per forward with its own graph to h and to
the activation's parameters: values, gradients and second derivatives are unchanged. Built-in activations whose
backward is already one fused kernel (ELU, ReLU) are left to autograd.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..layers.activations import ELU, ReLU

FUSED_BACKWARD: tuple[type[nn.Module], ...] = (ELU, ReLU)
"""Activations whose autograd backward is a single fused kernel: a cached derivative would only add work."""


class _DerivativeCachedActivation(torch.autograd.Function):
    """Output ``value`` = a(h.detach()) (its graph reaches only a's parameters); ∂output/∂h = diag(``derivative``)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(h: Tensor, derivative: Tensor, value: Tensor, doubles: bool) -> Tensor:
        return value

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        _, derivative, _, doubles = inputs
        ctx.save_for_backward(derivative)
        ctx.doubles = doubles

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, Tensor, None]:
        (derivative,) = ctx.saved_tensors
        product = grad * derivative  # differentiable: under create_graph its gradient reaches a'(h)'s graph
        if ctx.doubles:
            first, second = product.chunk(2, dim=1)
            product = first + second
        return product, None, grad, None


class DerivativeCachedBranch:
    """``branch`` as a callable whose activations (modules with ``derivative``) backpropagate by a cached a'(h).

    Not an ``nn.Module`` (the branch stays where it is registered); hooks exist only during a call with grad
    enabled, so frozen copies, deep copies and state dicts never see them.
    """

    def __init__(self, branch: Callable[[Tensor], Tensor]) -> None:
        self.branch = branch
        modules = branch.modules() if isinstance(branch, nn.Module) else ()
        self.activations = [
            m for m in modules if callable(getattr(m, "derivative", None)) and not isinstance(m, FUSED_BACKWARD)
        ]

    def __call__(self, x: Tensor) -> Tensor:
        if not self.activations or not torch.is_grad_enabled():
            return self.branch(x)
        inputs: dict[int, Tensor] = {}

        def detach_input(module: nn.Module, args: tuple[Any, ...]) -> tuple[Tensor] | None:
            if len(args) != 1 or not isinstance(args[0], Tensor) or not args[0].requires_grad:
                return None
            inputs[id(module)] = args[0]
            return (args[0].detach(),)

        def attach_derivative(module: nn.Module, args: tuple[Any, ...], value: Tensor) -> Tensor | None:
            h = inputs.pop(id(module), None)
            if h is None:
                return None
            doubles = bool(getattr(module, "doubles_channels", False))
            return _DerivativeCachedActivation.apply(h, module.derivative(h), value, doubles)

        handles = []
        for module in self.activations:
            handles.append(module.register_forward_pre_hook(detach_input))
            handles.append(module.register_forward_hook(attach_derivative))
        try:
            return self.branch(x)
        finally:
            for handle in handles:
                handle.remove()


def derivative_cached(branch: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """``branch`` computing the same function, with every activation's VJP a single product with a cached a'(h)."""
    return DerivativeCachedBranch(branch)


__all__ = ["DerivativeCachedBranch", "derivative_cached"]
