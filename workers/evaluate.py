"""Held-out evaluation: mean negative log-likelihood in nats (and bits/dim for images) with a declared budget.

The log-det is exact (budget ``"exact"``) when ``eval.exact`` is true, or ``"auto"`` and either the model's own
log-det is exact or the data has at most ``AUTO_EXACT_MAX_DIM`` dimensions (brute-force Jacobian). Otherwise the
model's estimator is switched to its evaluation budget (``configure_estimator(training=False)``, e.g. 20 exact
series terms) and the budget is recorded as ``"rr-20"`` (unbiased) or ``"series-20"`` (biased).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nflab.flows import bits_per_dim, hooks

from .datasource import DataSource

AUTO_EXACT_MAX_DIM = 16
DEFAULT_EVAL_TERMS = 20


def use_exact(model: nn.Module, dim: int, eval_cfg: Mapping[str, Any]) -> bool:
    """Whether evaluation uses an exact log-det (see module docstring); never for models without one (CIF)."""
    if not getattr(model, "has_exact_log_prob", True):
        return False
    mode = eval_cfg.get("exact", "auto")
    if mode is True or str(mode).lower() == "true":
        return True
    if mode is False or str(mode).lower() == "false":
        return model.logdet_kind == "exact"
    return model.logdet_kind == "exact" or dim <= AUTO_EXACT_MAX_DIM


def budget_label(model: nn.Module, exact: bool, estimator_cfg: Mapping[str, Any]) -> str:
    """The estimator budget string recorded next to every result: ``exact``, ``rr-20``, ``series-5``, ``iwae-100``."""
    if exact:
        return "exact"
    samples = getattr(model, "num_importance_samples", None)
    if samples is not None and not getattr(model, "has_exact_log_prob", True):
        return f"iwae-{samples}"
    for m in model.modules():
        cfg = getattr(m, "logdet_config", None)
        if cfg is not None and hasattr(cfg, "kind"):
            if cfg.kind == "truncated":
                return f"series-{cfg.n_terms}"
            if cfg.kind == "roulette":
                return f"rr-{cfg.eval_n_exact_terms}"
    if model.logdet_kind == "exact":
        return "exact"
    terms = estimator_cfg.get("eval_n_exact_terms") or DEFAULT_EVAL_TERMS
    return f"{'rr' if model.logdet_kind == 'unbiased' else 'series'}-{terms}"


def evaluate(
    model: nn.Module,
    data: DataSource,
    *,
    eval_cfg: Mapping[str, Any],
    estimator_cfg: Mapping[str, Any],
    step: int,
) -> dict[str, Any]:
    """Evaluate ``model`` (whatever weights it holds now) on the held-out set; leaves it in training mode.

    Returns ``{"step", "nats", "bpd" (None for non-images), "budget"}``.
    """
    exact = use_exact(model, data.dim, eval_cfg)
    hooks.before_evaluation(model)
    hooks.configure_estimator(model, estimator_cfg, training=False)
    model.eval()
    try:
        total, count = 0.0, 0
        with torch.no_grad():
            for chunk in data.heldout_chunks(int(eval_cfg.get("batch_size") or 1000)):
                lp = model.log_prob(chunk, exact=exact and model.logdet_kind != "exact")
                total += float(lp.double().sum())
                count += chunk.shape[0]
    finally:
        model.train()
        hooks.configure_estimator(model, estimator_cfg, training=True)
    mean_lp = total / max(count, 1)
    bpd = float(bits_per_dim(mean_lp, data.shape, n_bins=data.n_bins)) if data.is_image else None
    return {"step": step, "nats": -mean_lp, "bpd": bpd, "budget": budget_label(model, exact, estimator_cfg)}
