"""The basic power-series estimator: log det ≈ Σ_{k=1}^{n} c_k w_k vᵀJ^k v (Hutchinson trace, Chen et al., 2019).

vᵀJ^k comes from k successive vector–Jacobian products, or from the explicit J when the dimension is at most n
(:mod:`.powers`); with ``create_graph`` the estimate is differentiable in x and in g's parameters (memory grows with
n, which is what the Neumann gradient avoids).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from .coefficients import Coefficient
from .powers import JacobianPowers, Route
from .roulette import SeriesTerms
from .vjp import batch_dot


def hutchinson_series(
    gx: Tensor,
    x: Tensor,
    probes: Sequence[Tensor],
    coefficient: Coefficient,
    terms: SeriesTerms,
    *,
    create_graph: bool,
    route: Route = "auto",
) -> Tensor:
    """Per-example Σ_k c_k w_k vᵀJ^k v averaged over ``probes``; ``gx = g(x)`` must carry a graph to ``x``."""
    total = x.new_zeros(x.shape[0])
    powers = JacobianPowers(gx, x, terms.n_terms, create_graph=create_graph, route=route)
    for v in probes:
        for k, (weight, v_jk) in enumerate(zip(terms.weights, powers(v)), start=1):
            c_k = coefficient(k)
            if c_k != 0.0:
                total = total + (c_k * weight) * batch_dot(v_jk, v)
    return total / len(probes)
