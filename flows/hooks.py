"""Training-loop hooks that some layers need, found by duck typing on ``model.modules()``.

- ``after_optimizer_step(model)``: e.g. power iterations of Lipschitz-constrained layers after each step.
- ``before_evaluation(model)``: e.g. tighter power iterations before evaluating.
- ``configure_estimator(model, config, training=...)``: log-det estimator budgets (series terms, roulette
  distribution) for layers whose log-det is estimated; training and evaluation budgets differ.
Layers opt in by defining a method of the same name; families with exact log-dets ignore all three.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn


def after_optimizer_step(model: nn.Module) -> None:
    for m in model.modules():
        if m is not model and hasattr(m, "after_optimizer_step"):
            m.after_optimizer_step()


def before_evaluation(model: nn.Module) -> None:
    for m in model.modules():
        if m is not model and hasattr(m, "before_evaluation"):
            m.before_evaluation()


def configure_estimator(model: nn.Module, config: Mapping[str, Any], *, training: bool) -> None:
    for m in model.modules():
        if m is not model and hasattr(m, "configure_estimator"):
            m.configure_estimator(config, training=training)
