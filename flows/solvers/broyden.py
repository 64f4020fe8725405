"""Good Broyden root finding of F(x) = 0 per example, with a low-rank inverse Jacobian H = −I + Σ_j u_j v_jᵀ.

Step x ← x − H·F(x); update with s = Δx, y = ΔF: u = (s − Hy)/(sᵀHy), v = Hᵀs (Sherman–Morrison; Broyden, 1965;
as in Implicit Normalizing Flows). H₀ = −I suits F(x) = T(x) − x for a contraction T; the Banach fallback
x ← x + F(x) (i.e. x ← T(x)) takes over if Broyden diverges or stalls.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .config import check_max_iter, check_tolerance
from .convergence import effective_tolerance, example_residual, flat_map, residual_scale
from .damped import damped_iteration
from .errors import ConvergenceError, SolverReport

DIVERGENCE = 1e6
STALL_PATIENCE = 20


def broyden(
    F: Callable[[Tensor], Tensor],
    x0: Tensor,
    *,
    tol: float,
    max_iter: int,
    memory: int = 30,
    raise_on_failure: bool = True,
) -> tuple[Tensor, SolverReport]:
    """Solve F(x) = 0 (F in fixed-point-residual form T(x) − x); converged when every example's
    max_i |F(x)_i| / (1 + |x0_i|) ≤ tol (floored at 4 machine epsilons). ``memory`` low-rank pairs are kept
    (reset when full).

    Returns the lowest-residual iterate per example; raises :class:`ConvergenceError` unless
    ``raise_on_failure`` is False (then the report says ``converged=False``).
    """
    check_tolerance(tol, "tol")
    check_max_iter(max_iter, "max_iter")
    check_max_iter(memory, "memory")
    tol = effective_tolerance(tol, x0.dtype)
    shape = tuple(x0.shape)
    with torch.no_grad():
        f_flat = flat_map(F, shape)
        x = x0.reshape(shape[0], -1).clone()
        scale = residual_scale(x)
        fx = f_flat(x)
        best_r = example_residual(fx, scale)
        best_x = x.clone()
        initial = float(best_r.max())
        us: list[Tensor] = []
        vs: list[Tensor] = []
        evals, stall, best_batch, fallback = 1, 0, initial, False
        converged = bool((best_r <= tol).all())
        while not converged and evals < max_iter:
            active = (best_r > tol)[:, None].to(x.dtype)
            dx = -_apply_inverse(us, vs, fx) * active
            x_new = x + dx
            f_new = f_flat(x_new)
            evals += 1
            r = example_residual(f_new, scale)
            better = r < best_r
            best_r = torch.where(better, r, best_r)
            best_x = torch.where(better[:, None], x_new, best_x)
            converged = bool((best_r <= tol).all())
            err = float(r.max())
            if converged:
                break
            if not bool(torch.isfinite(r).all()) or err > DIVERGENCE * max(initial, tol):
                fallback = True
                break
            stall = 0 if float(best_r.max()) < best_batch else stall + 1
            best_batch = min(best_batch, float(best_r.max()))
            if stall >= STALL_PATIENCE:
                fallback = True
                break
            s, y = x_new - x, f_new - fx
            if len(us) == memory:
                us, vs = [], []
            hy = _apply_inverse(us, vs, y)
            v = _apply_inverse_transposed(us, vs, s)
            den = (v * y).sum(dim=1, keepdim=True)
            ok = torch.isfinite(den) & (den.abs() > torch.finfo(den.dtype).tiny)
            u = torch.where(ok, (s - hy) / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(s))
            us.append(u)
            vs.append(v)
            x, fx = x_new, f_new
        if not converged and fallback and evals < max_iter:
            out = damped_iteration(lambda z: z + f_flat(z), best_x, scale, tol=tol, max_iter=max_iter - evals)
            evals += out.iterations
            improved = out.residual < best_r
            best_x = torch.where(improved[:, None], out.x, best_x)
            best_r = torch.where(improved, out.residual, best_r)
            converged = out.converged
    report = SolverReport(evals, float(best_r.max()), converged, "broyden", fallback, tol)
    if not converged and raise_on_failure:
        raise ConvergenceError.from_report(report)
    return best_x.reshape(shape), report


def _apply_inverse(us: list[Tensor], vs: list[Tensor], z: Tensor) -> Tensor:
    """H z = −z + Σ_j u_j (v_j · z), per example."""
    out = -z
    for u, v in zip(us, vs):
        out = out + u * (v * z).sum(dim=1, keepdim=True)
    return out


def _apply_inverse_transposed(us: list[Tensor], vs: list[Tensor], z: Tensor) -> Tensor:
    """Hᵀ z = −z + Σ_j v_j (u_j · z), per example."""
    out = -z
    for u, v in zip(us, vs):
        out = out + v * (u * z).sum(dim=1, keepdim=True)
    return out
