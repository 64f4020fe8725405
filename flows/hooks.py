"""Training-loop hooks that some layers need, found by duck typing on ``model.modules()``.

- ``after_optimizer_step(model)``: e.g. power iterations of Lipschitz-constrained layers after each step.
- ``before_evaluation(model)``: e.g. tighter power iterations before evaluating.
- ``configure_estimator(model, options)``: change the log-det estimator options (the model options of the same
  names: ``estimator``, ``n_terms``, ``probe``, …) of a built model's estimated layers, e.g. to compare estimators on
  one trained model; nulls keep the built value. Runs get their estimator from their model options instead.
- ``regularization_loss(model)``: extra loss terms of the last forward (FFJORD's kinetic energy, Jacobian norm).
- ``training_metrics(model)``: numbers worth logging per step (NFE, series terms used).
Layers opt in by defining a method of the same name; families that need none of this ignore them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn


def after_optimizer_step(model: nn.Module) -> None:
    for m in model.modules():
        if m is not model and hasattr(m, "after_optimizer_step"):
            m.after_optimizer_step()


def before_evaluation(model: nn.Module) -> None:
    for m in model.modules():
        if m is not model and hasattr(m, "before_evaluation"):
            m.before_evaluation()


def configure_estimator(model: nn.Module, options: Mapping[str, Any]) -> None:
    for m in model.modules():
        if m is not model and hasattr(m, "configure_estimator"):
            m.configure_estimator(options)


def regularization_loss(model: nn.Module) -> Tensor | None:
    """Σ of ``m.regularization_loss()`` over the modules that define it (e.g. FFJORD's kinetic energy), else None.

    Each module returns the penalty of its most recent forward pass, already multiplied by its coefficient; the
    trainer adds the sum to the loss.
    """
    total: Tensor | None = None
    for m in model.modules():
        if m is not model and hasattr(m, "regularization_loss"):
            term = m.regularization_loss()
            if term is not None:
                total = term if total is None else total + term
    return total


def training_metrics(model: nn.Module) -> dict[str, float]:
    """Merged ``m.training_metrics()`` dicts (e.g. NFE forward/backward, series terms), for logging per step.

    Values of the same key from several modules are summed (e.g. NFE over every ODE block).
    """
    merged: dict[str, float] = {}
    for m in model.modules():
        if m is not model and hasattr(m, "training_metrics"):
            for key, value in m.training_metrics().items():
                merged[key] = merged.get(key, 0.0) + float(value)
    return merged
