"""Per-run certificates on a probe batch of held-out data (design §9 "beyond the references").

- ``inversion_error``: max |f⁻¹(f(x)) − x| over the probe batch.
- ``logdet_gap``: mean |exact − model| log-det, the brute-force Jacobian against the model's own (evaluation
  budget) log-det; ``None`` above ``MAX_EXACT_DIM`` dimensions. Images use a smaller probe for this one,
  since the brute-force Jacobian costs one backward pass per dimension.
Non-finite values are reported as ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from nflab.flows import MAX_EXACT_DIM, hooks

PROBE_SIZE = 64
IMAGE_LOGDET_PROBE = 8


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def compute_certificates(model: nn.Module, probe: Tensor, *, estimator_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Certificates of ``model`` (in the weights it holds now) on ``probe``; leaves the model in training mode."""
    dim = math.prod(probe.shape[1:])
    hooks.before_evaluation(model)
    hooks.configure_estimator(model, estimator_cfg, training=False)
    model.eval()
    try:
        with torch.no_grad():
            z, _ = model(probe)
            inv_err = float((model.inverse(z) - probe).abs().max())
            gap = None
            if dim <= MAX_EXACT_DIM:
                sub = probe if probe.dim() == 2 else probe[:IMAGE_LOGDET_PROBE]
                _, model_ld = model(sub)
                gap = _finite_or_none(float((model.exact_logdet(sub) - model_ld).abs().mean()))
    finally:
        model.train()
        hooks.configure_estimator(model, estimator_cfg, training=True)
    return {"inversion_error": _finite_or_none(inv_err), "logdet_gap": gap, "probe_size": int(probe.shape[0])}
