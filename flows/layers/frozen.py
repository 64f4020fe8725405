"""Frozen copies for fixed-point solvers: the same function of x, with every parameter a constant.

A solver (Anderson, Broyden, plain iteration) evaluates g(x) and vector-Jacobian products w.r.t. x many times;
on the copy each spectral layer holds its already-normalised weight, each dense layer its current η and each
activation its current β, so none of that is recomputed and no gradient reaches the original parameters.
:class:`FrozenMirror` keeps one such copy per block and refreshes its tensors in place on every call, because a
deep copy per forward cost about a quarter of a toy monotone training step.
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


def _signature(module: nn.Module) -> tuple:
    """What a refresh in place cannot follow: the module types, and each tensor's name, shape, dtype and device."""
    tensors = [*module.named_parameters(), *((n, b) for n, b in module.named_buffers() if b is not None)]
    return (
        tuple(type(m) for m in module.modules()),
        tuple((n, tuple(t.shape), t.dtype, t.device) for n, t in tensors),
    )


@torch.no_grad()
def _refresh(frozen: nn.Module, module: nn.Module) -> None:
    """Bring ``frozen`` (same structure) to ``module``'s current values: layers with ``refreeze_from_`` (spectral,
    dense) refreeze themselves from their source; every other module's own parameters and buffers are copied."""
    for target, source in zip(frozen.modules(), module.modules(), strict=True):
        refreeze = getattr(target, "refreeze_from_", None)
        if callable(refreeze):
            refreeze(source)
            continue
        for table in ("_parameters", "_buffers"):
            for name, value in getattr(source, table).items():
                if value is not None:
                    getattr(target, table)[name].copy_(value)


class FrozenMirror:
    """A :func:`frozen_copy` kept across calls: ``of(module)`` refreshes it in place from ``module``'s current
    tensors, and rebuilds it by deep copy only when the structure, a shape, dtype or device changed.

    The mirror holds the same values as a fresh ``frozen_copy`` would. It is not a submodule: it is in no
    ``state_dict`` and no ``parameters()``.
    """

    def __init__(self) -> None:
        self._frozen: nn.Module | None = None
        self._signature: tuple | None = None

    def of(self, module: nn.Module, *, example_input: Tensor | None = None) -> nn.Module:
        """The frozen copy of ``module`` as it is now (see :func:`frozen_copy` for ``example_input``)."""
        signature = _signature(module)
        if self._frozen is None or signature != self._signature:
            self._frozen = frozen_copy(module, example_input=example_input)
            self._signature = _signature(module)  # lazy buffers may have been created by example_input
        else:
            _refresh(self._frozen, module)
        return self._frozen

    def __deepcopy__(self, memo: dict) -> FrozenMirror:
        return FrozenMirror()  # a copied block builds its own mirror on first use


__all__ = ["FrozenMirror", "frozen_copy"]
