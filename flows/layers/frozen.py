"""Frozen copies for fixed-point solvers: the same function of x, with every parameter a constant.

A solver (Anderson, Broyden, plain iteration) evaluates g(x) and vector-Jacobian products w.r.t. x many times;
on the copy each spectral layer holds its already-normalised weight, each dense layer its current η and each
activation its current β, so none of that is recomputed and no gradient reaches the original parameters.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from .lipschitz import lipschitz_layers


def frozen_copy(module: nn.Module, *, example_input: Tensor | None = None) -> nn.Module:
    """A deep copy of ``module`` with every layer frozen (``freeze_()``) and no parameter requiring grad.

    Its outputs equal the original's exactly, and later changes of the original do not reach it. k×k spectral
    convs create their power-iteration vectors at their first forward: if one has not seen an input yet, pass
    ``example_input`` (run once through ``module`` under no_grad first), or run the module once beforehand.
    """
    pending = [layer for layer in lipschitz_layers(module) if not layer.is_initialized]
    if pending and example_input is not None:
        with torch.no_grad():
            module(example_input)
        pending = [layer for layer in pending if not layer.is_initialized]
    if pending:
        raise RuntimeError(
            f"frozen_copy: {type(pending[0]).__name__} has not seen an input yet (its power-iteration vectors are "
            f"sized at the first forward); run the module once or pass example_input"
        )
    frozen = copy.deepcopy(module)
    for submodule in frozen.modules():
        freeze = getattr(submodule, "freeze_", None)
        if callable(freeze):
            freeze()
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
        parameter.grad = None
    return frozen


__all__ = ["frozen_copy"]
