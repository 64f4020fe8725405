"""vᵀJ, vᵀJ², …, vᵀJⁿ at one point, by the cheaper of two routes that give the same numbers.

Successive vector–Jacobian products cost n passes back through g per probe. When the per-example dimension D is at
most n (toy data: D = 2 against n ≈ 4 roulette terms), building the explicit J (D one-hot VJPs in one vmapped pass,
with the same ``create_graph``) and taking n products with a [D, D] matrix is cheaper, and every probe reuses the
same J. Both routes are differentiable in x and in g's parameters alike; the estimate does not change.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal

from torch import Tensor

from .exact import batch_jacobian
from .vjp import vjp_powers

EXPLICIT_MAX_DIM = 16
"""Above this per-example dimension the explicit route is never taken (D VJPs and a D×D matrix per example)."""

Route = Literal["auto", "vjp", "explicit"]


class JacobianPowers:
    """``powers(v)`` yields vᵀJ^k, k = 1..n, at the point of ``gx = g(x)`` (which must carry a graph to ``x``).

    ``route``: ``auto`` takes the explicit Jacobian when D ≤ min(n, 16), else successive VJPs; ``vjp`` and
    ``explicit`` force one route (tests compare them).
    """

    def __init__(self, gx: Tensor, x: Tensor, n: int, *, create_graph: bool, route: Route = "auto") -> None:
        if route not in ("auto", "vjp", "explicit"):
            raise ValueError(f"route: {route!r} is not one of: auto, vjp, explicit")
        dim = math.prod(x.shape[1:])
        self.gx, self.x, self.n, self.create_graph = gx, x, n, create_graph
        self.explicit = route == "explicit" or (route == "auto" and n > 0 and dim <= min(n, EXPLICIT_MAX_DIM))
        self.jacobian = batch_jacobian(gx, x, create_graph=create_graph) if self.explicit else None

    def __call__(self, v: Tensor) -> Iterator[Tensor]:
        if self.jacobian is None:
            yield from vjp_powers(self.gx, self.x, v, self.n, create_graph=self.create_graph)
            return
        row = v.reshape(v.shape[0], 1, -1)
        for _ in range(self.n):
            row = row @ self.jacobian  # (vᵀJ)_j = Σ_i v_i ∂g_i/∂x_j
            yield row.reshape(v.shape)
