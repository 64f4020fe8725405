"""E6 (Koehler, Mehta & Risteski): how many affine couplings with linear s and t does a random linear map need?

The model is K affine couplings on a fixed partition of ℝ^d (the first ⌈d/2⌉ coordinates A, the rest B), alternately
updating B from A and A from B: x_B ← (x_B + W_t x_A + b_t) ⊙ exp(W_s x_A + b_s) (the RealNVP vector family with
``conditioner="linear"``, ``mask="half"``, ``scale="exp"``). Each layer starts as the identity. With W_s = 0 a
layer is a block-triangular linear map with a positive diagonal, so a composition can only reach linear maps of
positive determinant: the targets T are iid N(0, 1) matrices conditioned on det T > 0 (a negative determinant flips
the sign of T's last row, which maps one half of the Gaussian ensemble onto the other with the same density).

The fit is a regression: fresh x ~ N(0, I) every step, loss mean ‖f(x) − T x‖², Adam. Reported: the relative error
E‖f(x) − T x‖² / E‖T x‖² on a fixed test sample at the end of the fit (0: exact; 1: as bad as the zero map).
Koehler et al.: K ≤ 47 couplings represent every such T, some T need K ≥ 3, and in practice 4–16 fit random T well.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..models.nice import coupling_stack
from ..transform import Compose


def random_linear_map(dim: int, generator: torch.Generator, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """T ∈ ℝ^{d×d} with iid N(0, 1) entries, conditioned on det T > 0 (module docstring)."""
    t = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
    if torch.linalg.det(t) < 0:
        t[-1] = -t[-1]
    return t.to(dtype)


def linear_couplings(dim: int, k: int) -> Compose:
    """K affine couplings with linear s and t on the fixed half partition, starting at the identity."""
    if dim < 2:
        raise ValueError(f"dim must be at least 2 for a coupling; got {dim}")
    if k < 1:
        raise ValueError(f"the number of couplings must be at least 1; got {k}")
    return Compose(*coupling_stack(dim, k, "half", (), "exp"))


@dataclass
class LinearFit:
    """One regression: its reported relative test error (at the end of the fit; if the fit diverged, at its last
    finite evaluation, and ``diverged`` is set) and the error at every evaluation."""

    couplings: int
    error: float
    diverged: bool
    history: list[tuple[int, float]] = field(default_factory=list)


def relative_error(model: Compose, target: Tensor, x: Tensor) -> float:
    """E‖f(x) − T x‖² / E‖T x‖² over the rows of ``x``."""
    with torch.no_grad():
        want = x @ target.T
        got = model(x)[0]
        return float(((got - want) ** 2).sum() / (want**2).sum())


def fit_linear_map(
    target: Tensor,
    k: int,
    *,
    steps: int,
    lr: float,
    batch_size: int,
    generator: torch.Generator,
    test_x: Tensor,
    eval_every: int = 100,
    grad_clip: float | None = None,
    on_eval: Callable[[int, float], None] | None = None,
) -> LinearFit:
    """Regress K linear couplings onto ``target`` (module docstring), evaluating the relative test error every
    ``eval_every`` steps and at the end; the fit is deterministic given the generator. ``grad_clip``: the gradient
    norm is clipped to it (deep stacks multiply K scales e^s: without it a large step can overflow)."""
    dim = target.shape[0]
    dtype = target.dtype
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))  # layer init (zeros: no draw)
    model = linear_couplings(dim, k).to(dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history: list[tuple[int, float]] = [(0, relative_error(model, target, test_x))]
    for step in range(1, steps + 1):
        x = torch.randn(batch_size, dim, generator=generator, dtype=dtype)
        optimizer.zero_grad(set_to_none=True)
        loss = ((model(x)[0] - x @ target.T) ** 2).sum(dim=1).mean()
        if not math.isfinite(float(loss.detach())):
            break  # diverged: the errors so far stand
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if step % eval_every == 0 or step == steps:
            history.append((step, relative_error(model, target, test_x)))
            if on_eval is not None:
                on_eval(step, history[-1][1])
    finite = [e for step, e in history if math.isfinite(e)]
    diverged = len(finite) < len(history) or history[-1][0] != steps
    return LinearFit(couplings=k, error=finite[-1] if finite else float("inf"), diverged=diverged, history=history)
