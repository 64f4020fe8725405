"""Per-run certificates on a probe batch of held-out data (beyond what the reference papers report).

- ``inversion_error``: max |f⁻¹(f(x)) − x| over the probe batch (``None`` for models that are not bijections: CIF).
- ``logdet_gap``: mean |exact − model| log-det, the exact log-det against the model's own (evaluation budget)
  estimate; ``None`` above ``MAX_EXACT_DIM`` dimensions, without an exact log-det, or with padding (two draws of ε).
- ``jacobian_condition`` and ``jacobian_norm``: median condition number and max spectral norm (a measured local
  Lipschitz constant) of ∂f/∂x over the probe, from the brute-force Jacobian, for at most ``JACOBIAN_MAX_DIM``
  dimensions (E7's conditioning plots read these); a padded flow is differentiated at the padded point.
Images use a smaller probe for the Jacobian-based ones, since they cost one backward pass per dimension.
Non-finite values are reported as ``None``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from nflab.flows import MAX_EXACT_DIM, hooks
from nflab.flows.augment import PaddedFlow, WrappedFlow
from nflab.flows.jacobian import jacobian_matrices

PROBE_SIZE = 64
IMAGE_LOGDET_PROBE = 8
JACOBIAN_MAX_DIM = 64


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _inner_square_flow(model: nn.Module, sub: Tensor) -> tuple[nn.Module, Tensor]:
    """The map whose Jacobian is square: a padded flow's inner flow at the padded point (Koehler et al.)."""
    while isinstance(model, WrappedFlow) and not isinstance(model, PaddedFlow):
        model = model.inner
    if isinstance(model, PaddedFlow):
        point, _ = model.pad(sub, generator=torch.Generator(device=sub.device).manual_seed(0))
        return model.inner, point
    return model, sub


def _jacobian_stats(model: nn.Module, sub: Tensor) -> dict[str, float | None]:
    flow, point = _inner_square_flow(model, sub)
    jac = jacobian_matrices(lambda v: flow(v)[0], point).detach().double()
    sv = torch.linalg.svdvals(jac)
    cond = (sv[:, 0] / sv[:, -1]).median()
    return {"jacobian_condition": _finite_or_none(float(cond)), "jacobian_norm": _finite_or_none(float(sv[:, 0].max()))}


def compute_certificates(model: nn.Module, probe: Tensor) -> dict[str, Any]:
    """Certificates of ``model`` (in the weights it holds now) on ``probe``; leaves the model in training mode."""
    dim = math.prod(probe.shape[1:])
    bijective = getattr(model, "has_exact_log_prob", True)
    hooks.before_evaluation(model)
    model.eval()
    out: dict[str, Any] = {"inversion_error": None, "logdet_gap": None, "probe_size": int(probe.shape[0])}
    try:
        sub = probe if probe.dim() == 2 else probe[:IMAGE_LOGDET_PROBE]
        with torch.no_grad():
            if bijective:
                z, _ = model(probe)
                out["inversion_error"] = _finite_or_none(float((model.inverse(z) - probe).abs().max()))
            if bijective and dim <= MAX_EXACT_DIM and not isinstance(model, PaddedFlow):  # padding: ε differs
                _, model_ld = model(sub)
                out["logdet_gap"] = _finite_or_none(float((model.exact_logdet(sub) - model_ld).abs().mean()))
        if bijective and dim <= JACOBIAN_MAX_DIM:
            out.update(_jacobian_stats(model, sub))
    finally:
        model.train()
    return out
