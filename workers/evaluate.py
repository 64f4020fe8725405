"""Held-out evaluation of one split: mean negative log-likelihood in nats (and bits/dim for images), what kind of
number it is, and the estimator budget it was computed with.

- Split: ``validation`` (what selection reads) or ``test`` (what is reported); see ``DataSource``.
- Exact log-det when ``eval.exact`` is true, or ``"auto"`` and the data has at most ``AUTO_EXACT_MAX_DIM``
  dimensions: the brute-force Jacobian or each block's exact path; for a flow without an exact likelihood (CIF)
  the blocks of its base switch to their exact log-det and the bound stays a bound. Otherwise the model's
  estimator runs with its evaluation budget in eval mode (its ``eval_n_exact_terms`` option, e.g. 20 exact series
  terms).
- ``quantity``: what the number is, as the flow declares it in evaluation mode (``Flow.likelihood_kind``):
  ``exact``, ``unbiased``, ``bound``, ``biased`` or ``joint``.
- ``budget``: ``exact``, ``rr-20`` (roulette, 20 exact terms), ``series-5`` (truncated), and ``iwae-K`` for every
  importance-weighted layer (``rr-20+iwae-100`` when both apply).
- Noise of stochastic likelihoods (padding, CIF, dequantization) comes from ``generator`` (the same draws at
  every evaluation when the caller passes a fresh generator with the same seed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from nflab.flows import bits_per_dim, hooks
from nflab.flows.augment.wrapped import inner_log_prob
from nflab.flows.exact import exact_logdets

from .datasource import DataSource

AUTO_EXACT_MAX_DIM = 16
DEFAULT_EVAL_TERMS = 20


def use_exact(model: nn.Module, dim: int, eval_cfg: Mapping[str, Any]) -> bool:
    """Whether evaluation uses exact log-dets (see module docstring)."""
    mode = eval_cfg["exact"]
    if mode is True:
        return True
    if mode is False:
        return model.logdet_kind == "exact"
    return model.logdet_kind == "exact" or dim <= AUTO_EXACT_MAX_DIM


def _estimator_label(model: nn.Module, exact: bool) -> str:
    if exact or model.logdet_kind == "exact":
        return "exact"
    for m in model.modules():
        cfg = getattr(m, "logdet_config", None)
        if cfg is not None and hasattr(cfg, "kind"):
            if cfg.kind == "truncated":
                return f"series-{cfg.n_terms}"
            if cfg.kind == "roulette":
                return f"rr-{cfg.eval_n_exact_terms}"
    return f"{'rr' if model.logdet_kind == 'unbiased' else 'series'}-{DEFAULT_EVAL_TERMS}"


def budget_label(model: nn.Module, exact: bool) -> str:
    """The estimator budget recorded next to every result (module docstring), for the model's current mode."""
    logdet = _estimator_label(model, exact)
    iwae = [f"iwae-{k}" for k in getattr(model, "importance_samples", ())]
    return "+".join(iwae) if iwae and logdet == "exact" else "+".join([logdet, *iwae])


def _log_prob(model: nn.Module, x: Tensor, exact: bool, generator: torch.Generator | None) -> Tensor:
    if not exact or model.logdet_kind == "exact":
        return inner_log_prob(model, x, exact=False, generator=generator)
    if getattr(model, "has_exact_log_prob", True):
        return inner_log_prob(model, x, exact=True, generator=generator)
    with exact_logdets(model):  # a bound (CIF): exact log-dets of its base's blocks, the bound stays a bound
        return inner_log_prob(model, x, exact=False, generator=generator)


def evaluate(
    model: nn.Module,
    data: DataSource,
    *,
    eval_cfg: Mapping[str, Any],
    step: int,
    split: str = "test",
    generator: torch.Generator | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` (whatever weights it holds now) on ``split``; leaves it in training mode.

    Returns ``{"step", "split", "nats", "bpd" (None for non-images), "budget", "quantity", "n"}``.
    """
    exact = use_exact(model, data.dim, eval_cfg)
    hooks.before_evaluation(model)
    model.eval()
    try:
        quantity = model.likelihood_kind(exact=exact)
        budget = budget_label(model, exact)
        total, count = 0.0, 0
        with torch.no_grad():
            for chunk in data.heldout_chunks(eval_cfg["batch_size"], split=split):
                lp = _log_prob(model, chunk, exact, generator)
                total += float(lp.double().sum())
                count += chunk.shape[0]
    finally:
        model.train()
    mean_lp = total / max(count, 1)
    bpd = float(bits_per_dim(mean_lp, data.shape, n_bins=data.n_bins)) if data.is_image else None
    return {
        "step": step,
        "split": split,
        "nats": -mean_lp,
        "bpd": bpd,
        "budget": budget,
        "quantity": quantity,
        "n": count,
    }
