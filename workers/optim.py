"""Optimiser pieces of the training loop: Adam/Adamax, linear warm-up, gradient-norm clipping and EMA weights.

Weight decay is torch's real L2 term (MonotoneFlows), not the no-op of the residual-flows copies (reference
§1.6). The learning rate is a pure function of the step, ``lr·min(1, (step+1)/warmup_steps)``, so it needs
no scheduler state in checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn


def make_optimizer(model: nn.Module, train_cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """Adam or Adamax over the model's parameters, with the run's lr, betas and weight decay."""
    kind = str(train_cfg.get("optimizer", "adam")).lower()
    betas = tuple(float(b) for b in train_cfg.get("betas") or (0.9, 0.999))
    kwargs = {
        "lr": float(train_cfg["lr"]),
        "betas": betas,
        "weight_decay": float(train_cfg.get("weight_decay") or 0),
        "foreach": True,  # one fused kernel per step over all parameters; CPU's default is the per-tensor loop
    }
    if kind == "adam":
        return torch.optim.Adam(model.parameters(), **kwargs)
    if kind == "adamax":
        return torch.optim.Adamax(model.parameters(), **kwargs)
    raise ValueError(f"train.optimizer: {kind!r} is not one of: adam, adamax")


def lr_at(step: int, base_lr: float, warmup_steps: int | None) -> float:
    """Learning rate of the update made at (0-based) ``step``: linear warm-up, then constant."""
    if not warmup_steps:
        return base_lr
    return base_lr * min(1.0, (step + 1) / warmup_steps)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def clip_gradients(parameters: Iterable[Tensor], max_norm: float | None) -> float:
    """Total gradient 2-norm before clipping; clips in place to ``max_norm`` when it is set."""
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return 0.0
    if max_norm:
        return float(torch.nn.utils.clip_grad_norm_(params, float(max_norm)))
    norms = torch.stack([torch.linalg.vector_norm(p.grad.detach()) for p in params])
    return float(torch.linalg.vector_norm(norms))


class Ema:
    """Exponential moving average of the parameters: shadow ← shadow − (1 − decay)·(shadow − param).

    The shadow is initialised from the parameters at the first ``update`` (after the first optimiser step, so
    that data-dependent initialisation is included), as in residual flows.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema: {decay!r} is not a decay in (0, 1)")
        self.decay = float(decay)
        self.shadow: dict[str, Tensor] | None = None
        self._names = [n for n, _ in model.named_parameters()]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current parameters into the average."""
        params = dict(model.named_parameters())
        if self.shadow is None:
            self.shadow = {n: params[n].detach().clone() for n in self._names}
            return
        for n in self._names:
            self.shadow[n].lerp_(params[n].detach(), 1.0 - self.decay)

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """Swap the averaged weights into ``model`` for the duration of the block (no-op before the first update)."""
        if self.shadow is None:
            yield
            return
        params = dict(model.named_parameters())
        backup = {n: params[n].detach().clone() for n in self._names}
        with torch.no_grad():
            for n in self._names:
                params[n].copy_(self.shadow[n])
        try:
            yield
        finally:
            with torch.no_grad():
                for n in self._names:
                    params[n].copy_(backup[n])

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "shadow": self.shadow}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.decay = float(state["decay"])
        self.shadow = None if state["shadow"] is None else dict(state["shadow"])
