"""Neumann-series gradient of a power-series log-det (Chen et al., 2019, §3.2), generalised to any c_k.

∂ Σ_k c_k tr(J^k) = Σ_{k≥0} (k+1) c_{k+1} tr(J^k ∂J). With r = c₁v + Σ_{k=1}^{n} (k+1) c_{k+1} w_k vᵀJ^k (no graph),
the surrogate (rᵀJ)·v has exactly that roulette gradient (the J^k term uses w_k); one differentiable VJP, O(1) memory.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from .coefficients import Coefficient
from .powers import JacobianPowers, Route
from .roulette import SeriesTerms
from .vjp import batch_dot, vjp


def neumann_series(
    gx: Tensor,
    x: Tensor,
    probes: Sequence[Tensor],
    coefficient: Coefficient,
    terms: SeriesTerms,
    *,
    route: Route = "auto",
) -> Tensor:
    """Per-example log-det estimate whose VALUE is the basic estimate Σ c_k w_k vᵀJ^k v and whose GRADIENT is the
    Neumann one: ``value.detach() + (surrogate − surrogate.detach())`` — never the surrogate's own value."""
    value = x.new_zeros(x.shape[0])
    surrogate = x.new_zeros(x.shape[0])
    powers = JacobianPowers(gx, x, terms.n_terms, create_graph=False, route=route)
    for v in probes:
        r = coefficient(1) * v
        for k, (weight, v_jk) in enumerate(zip(terms.weights, powers(v)), start=1):
            value = value + (coefficient(k) * weight) * batch_dot(v_jk, v)
            r = r + ((k + 1) * coefficient(k + 1) * weight) * v_jk
        surrogate = surrogate + batch_dot(vjp(gx, x, r.detach(), create_graph=True), v)
    value, surrogate = value / len(probes), surrogate / len(probes)
    return value.detach() + (surrogate - surrogate.detach())
