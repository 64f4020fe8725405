"""E8 — numerical check of Theorem 4 of Monotone Flows (Ahn et al., NeurIPS 2022) with the shipped blocks.

Notation. For c > 0 and 0 ≤ ℓ < 1 let c·R_ℓ = {F : F/c − Id is ℓ-Lipschitz}. On ℝ^d (convex) this holds iff
‖J_F(x) − c·I‖₂ ≤ c·ℓ for every x (mean-value inequality), so with p = x₁ − x₂ and q = F(x₁) − F(x₂):
c(1 − ℓ)‖p‖ ≤ ‖q‖ ≤ c(1 + ℓ)‖p‖, i.e. Lip(F) ≤ c(1 + ℓ) and Lip(F⁻¹) ≤ 1/(c(1 − ℓ)).

The three formulations with Lip(G) ≤ L < 1 and the bounds the theorem implies:
- residual F = Id + G ∈ R_L (c = 1, ℓ = L): Lip(F) ≤ 1 + L, Lip(F⁻¹) ≤ 1/(1 − L).
- inverse residual F = (Id + G)⁻¹ ∈ I_L = (1/(1 − L²))·R_L: Lip(F) ≤ (1 + L)/(1 − L²) = 1/(1 − L),
  Lip(F⁻¹) ≤ (1 − L²)/(1 − L) = 1 + L.  [J_F = (I + J_G)⁻¹; ‖J_F − cI‖ ≤ cL ⟺ the Apollonius ball of q.]
- monotone F = ((Id + G)/2)⁻¹ − Id ∈ M_L = ((1 + L²)/(1 − L²))·R_{2L/(1+L²)}: c(1 + ℓ) = (1 + L)²/(1 − L²), so
  Lip(F) ≤ (1 + L)/(1 − L) and Lip(F⁻¹) ≤ (1 + L)/(1 − L). F is the monotone operator whose Cayley operator
  2(Id + F)⁻¹ − Id is G, which is L-Lipschitz (so nonexpansive): J_Cayley = 2(I + J_F)⁻¹ − I = J_G.
Inclusions: a ball {J : ‖J − c₁I‖ ≤ r₁} lies in {J : ‖J − c₂I‖ ≤ r₂} iff |c₁ − c₂| + r₁ ≤ r₂. For R_L ⊂ M_L this is
2L²/(1 − L²) + L ≤ 2L/(1 − L²) ⟺ (1 − L)² ≥ 0; for I_L ⊂ M_L it is L²/(1 − L²) + L/(1 − L²) ≤ 2L/(1 − L²) ⟺
L² ≤ L. Both are strict: G = −L·I gives the monotone F = ((1 + L)/(1 − L))·Id, whose Lipschitz constant exceeds
1 + L (every F ∈ R_L) and 1/(1 − L) (every F ∈ I_L). Each bound is attained by a linear G = ±L·I.

The monotone block of ``nflab.flows.blocks`` computes F with G(u) = √2·g(u/√2) (same Lipschitz constant), so
J_G at u = √2·w is J_g(w) with w = (x + F(x))/√2. All Jacobians are brute force (float64), Lipschitz constants
are maxima of the spectral norm (or of 1/σ_min for the inverse) over many points.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from nflab.flows.analysis.fit1d import FIT1D_VARIANTS, Inverted, Scaled, build_fit1d, slope_range
from nflab.flows.blocks import MonotoneBlock, ResidualBlock
from nflab.flows.jacobian import jacobian_matrices
from nflab.flows.logdet import LogDetConfig
from nflab.flows.solvers import SolverConfig

pytestmark = pytest.mark.usefixtures("float64")  # tests/conftest.py


SOLVER = SolverConfig(tol=1e-12, max_iter=5000, backward_tol=1e-12, backward_max_iter=2000)
EXACT = LogDetConfig(kind="exact")
LIPSCHITZ = (0.3, 0.6, 0.9)
DIMS = (2, 3)
TOL = 1e-7


def _orthogonal(d: int, gen: torch.Generator) -> Tensor:
    q, r = torch.linalg.qr(torch.randn(d, d, generator=gen))
    return q * torch.sign(torch.diagonal(r))


class TanhBranch(nn.Module):
    """g(x) = L·U tanh(Vᵀx + b): J_g = L·U diag(tanh′)Vᵀ, so Lip(g) = L·max tanh′ = L exactly (attained where a
    coordinate of Vᵀx + b vanishes)."""

    def __init__(self, lipschitz: float, u: Tensor, v: Tensor, b: Tensor) -> None:
        super().__init__()
        self.lipschitz = lipschitz
        self.register_buffer("u", u)
        self.register_buffer("v", v)
        self.register_buffer("b", b)

    def forward(self, x: Tensor) -> Tensor:
        return self.lipschitz * torch.tanh(x @ self.v + self.b) @ self.u.T

    def steepest_point(self) -> Tensor:
        """x with Vᵀx + b = 0, where ‖J_g(x)‖ = L."""
        return -(self.v @ self.b).unsqueeze(0)


class LinearBranch(nn.Module):
    """g(x) = A x."""

    def __init__(self, matrix: Tensor) -> None:
        super().__init__()
        self.register_buffer("matrix", matrix)

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.matrix.T


def _random_branch(lipschitz: float, d: int, seed: int, *, symmetric_sign: int = 0) -> TanhBranch:
    """A random g with Lip(g) = L; ``symmetric_sign=±1`` makes J_g(0) = ±L·I-like (U = ±V, b = 0): worst cases."""
    gen = torch.Generator().manual_seed(seed)
    v = _orthogonal(d, gen)
    if symmetric_sign:
        return TanhBranch(lipschitz, symmetric_sign * v, v, torch.zeros(d))
    return TanhBranch(lipschitz, _orthogonal(d, gen), v, 0.5 * torch.randn(d, generator=gen))


def _points(d: int, seed: int, n: int = 48) -> Tensor:
    gen = torch.Generator().manual_seed(1000 + seed)
    return torch.cat([torch.zeros(1, d), 2.0 * torch.randn(n - 1, d, generator=gen)])


def _jac(fn, x: Tensor) -> Tensor:
    return jacobian_matrices(fn, x)


def _lipschitz(jac: Tensor) -> tuple[float, float]:
    """(max ‖J‖₂, max 1/σ_min(J)) over the points: estimates of Lip(F) and Lip(F⁻¹)."""
    sv = torch.linalg.svdvals(jac)
    return float(sv[:, 0].max()), float((1.0 / sv[:, -1]).max())


def _ball_radius(jac: Tensor, centre: float) -> float:
    """max over the points of ‖J − centre·I‖₂."""
    eye = torch.eye(jac.shape[-1])
    return float(torch.linalg.matrix_norm(jac - centre * eye, ord=2).max())


def classes(lipschitz: float) -> dict[str, tuple[float, float]]:
    """(c, c·ℓ) of R_L, I_L and M_L (see module docstring)."""
    L = lipschitz
    return {
        "residual": (1.0, L),
        "inverse_residual": (1.0 / (1 - L**2), L / (1 - L**2)),
        "monotone": ((1 + L**2) / (1 - L**2), 2 * L / (1 - L**2)),
    }


def bounds(lipschitz: float) -> dict[str, tuple[float, float]]:
    """(bound on Lip(F), bound on Lip(F⁻¹)) of each formulation."""
    L = lipschitz
    return {
        "residual": (1 + L, 1 / (1 - L)),
        "inverse_residual": (1 / (1 - L), 1 + L),
        "monotone": ((1 + L) / (1 - L), (1 + L) / (1 - L)),
    }


def jacobians(g: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """J_F at x of the residual block, the inverse of a residual block and the monotone block, all built on g."""
    residual = ResidualBlock(g, logdet=EXACT, solver=SOLVER)
    monotone = MonotoneBlock(g, logdet=EXACT, solver=SOLVER)
    return {
        "residual": _jac(lambda v: residual(v)[0], x),
        "inverse_residual": _jac(residual.inverse, x),
        "monotone": _jac(lambda v: monotone(v)[0], x),
    }


def test_bounds_follow_from_the_classes() -> None:
    for L in (0.0, *LIPSCHITZ):
        for name, (c, r) in classes(L).items():
            assert bounds(L)[name] == pytest.approx((c + r, 1 / (c - r)), rel=1e-12)
        c_m, r_m = classes(L)["monotone"]
        for inner in ("residual", "inverse_residual"):  # ball inclusion |c₁ − c₂| + r₁ ≤ r₂
            c, r = classes(L)[inner]
            assert abs(c - c_m) + r <= r_m + 1e-12


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("lipschitz", LIPSCHITZ)
def test_random_lipschitz_branches_respect_the_theorem(lipschitz: float, d: int) -> None:
    g = _random_branch(lipschitz, d, seed=int(10 * lipschitz) + d)
    x = torch.cat([g.steepest_point(), _points(d, seed=d)])
    assert _lipschitz(_jac(g, x))[0] == pytest.approx(lipschitz, rel=1e-12)  # Lip(g) = L, attained
    jac = jacobians(g, x)
    c_m, r_m = classes(lipschitz)["monotone"]
    for name, j in jac.items():
        c, r = classes(lipschitz)[name]
        assert _ball_radius(j, c) <= r + TOL, name  # F ∈ c·R_ℓ
        assert _ball_radius(j, c_m) <= r_m + TOL, name  # and F ∈ M_L (R_L ⊂ M_L, I_L ⊂ M_L)
        lip, lip_inv = _lipschitz(j)
        bound, bound_inv = bounds(lipschitz)[name]
        assert lip <= bound + TOL and lip_inv <= bound_inv + TOL, name
        assert lip >= 1 / bound_inv - TOL and lip_inv >= 1 / bound - TOL, name  # the other side of the ball


@pytest.mark.parametrize("lipschitz", LIPSCHITZ)
def test_monotone_cayley_operator_is_the_branch(lipschitz: float) -> None:
    """2(I + J_F(x))⁻¹ − I = J_g(w) with w = (x + F(x))/√2: the Cayley operator of F is G, hence L-Lipschitz."""
    d = 3
    g = _random_branch(lipschitz, d, seed=7)
    block = MonotoneBlock(g, logdet=EXACT, solver=SOLVER)
    x = _points(d, seed=3, n=24)
    j_f = _jac(lambda v: block(v)[0], x)
    eye = torch.eye(d)
    cayley = 2 * torch.linalg.inv(eye + j_f) - eye
    with torch.no_grad():
        w = (x + block(x)[0]) / math.sqrt(2.0)
    torch.testing.assert_close(cayley, _jac(g, w), atol=1e-9, rtol=0)
    assert float(torch.linalg.matrix_norm(cayley, ord=2).max()) <= lipschitz + TOL
    sym_min = torch.linalg.eigvalsh((j_f + j_f.transpose(1, 2)) / 2).min()  # F is strongly monotone
    assert float(sym_min) >= (1 - lipschitz) / (1 + lipschitz) - TOL


@pytest.mark.parametrize("lipschitz", LIPSCHITZ)
def test_bounds_are_attained_by_linear_branches(lipschitz: float) -> None:
    d = 2
    x = _points(d, seed=5, n=8)
    expanding = jacobians(LinearBranch(-lipschitz * torch.eye(d)), x)  # G = −L·I
    contracting = jacobians(LinearBranch(lipschitz * torch.eye(d)), x)  # G = +L·I
    b = bounds(lipschitz)
    assert _lipschitz(contracting["residual"])[0] == pytest.approx(b["residual"][0], rel=1e-9)
    assert _lipschitz(expanding["residual"])[1] == pytest.approx(b["residual"][1], rel=1e-9)
    assert _lipschitz(expanding["inverse_residual"])[0] == pytest.approx(b["inverse_residual"][0], rel=1e-9)
    assert _lipschitz(contracting["inverse_residual"])[1] == pytest.approx(b["inverse_residual"][1], rel=1e-9)
    assert _lipschitz(expanding["monotone"])[0] == pytest.approx(b["monotone"][0], rel=1e-9)
    assert _lipschitz(contracting["monotone"])[1] == pytest.approx(b["monotone"][1], rel=1e-9)
    # strict inclusions: this monotone F is in neither R_L nor I_L
    lip_m = _lipschitz(expanding["monotone"])[0]
    assert lip_m > b["residual"][0] and lip_m > b["inverse_residual"][0]


@pytest.mark.parametrize("sign", [1, -1])
def test_nonlinear_worst_cases_reach_the_bounds(sign: int) -> None:
    """g = ±L·V tanh(Vᵀx) has J_g(0) = ±L·I: the residual and monotone bounds are attained at x = 0."""
    lipschitz, d = 0.6, 3
    jac = jacobians(_random_branch(lipschitz, d, seed=11, symmetric_sign=sign), _points(d, seed=2, n=16))
    b = bounds(lipschitz)
    which = 0 if sign > 0 else 1  # +L·I stretches the residual map, −L·I its inverse
    assert _lipschitz(jac["residual"])[which] == pytest.approx(b["residual"][which], rel=1e-9)
    assert _lipschitz(jac["inverse_residual"])[1 - which] == pytest.approx(b["inverse_residual"][1 - which], rel=1e-9)
    assert _lipschitz(jac["monotone"])[1 - which] == pytest.approx(b["monotone"][1 - which], rel=1e-9)


@pytest.mark.parametrize("lipschitz", LIPSCHITZ)
def test_shipped_exact_logdets_match_the_brute_force_jacobians(lipschitz: float) -> None:
    d = 3
    g = _random_branch(lipschitz, d, seed=5)
    x = _points(d, seed=9, n=16)
    residual = ResidualBlock(g, logdet=EXACT, solver=SOLVER)
    monotone = MonotoneBlock(g, logdet=EXACT, solver=SOLVER)
    jac = jacobians(g, x)
    with torch.no_grad():
        for name, block in (("residual", residual), ("monotone", monotone)):
            torch.testing.assert_close(block(x)[1], torch.linalg.slogdet(jac[name]).logabsdet, atol=1e-9, rtol=0)


# --- the 1-D maps of E1 (the same bounds with d = 1, two blocks composed) -------------------------------------------


@pytest.mark.parametrize("variant", FIT1D_VARIANTS)
def test_fit1d_maps_stay_within_their_slope_range(variant: str) -> None:
    """With the output scales at 1, f′ of each two-block map lies in ``slope_range(L, variant)``, L = coeff."""
    torch.manual_seed(0)
    model = build_fit1d(variant, branch="mlp", activation="lipswish", coeff=0.9, hidden=(16,), solver=SOLVER)
    for layer in model.modules():  # spend the Lipschitz budget: large raw weights are normalised down to coeff
        if hasattr(layer, "update_lipschitz"):
            with torch.no_grad():
                layer.weight.mul_(50.0)
            layer.update_lipschitz(200)
    x = torch.linspace(-3, 3, 301).unsqueeze(1)
    slopes = _jac(lambda v: model(v)[0], x).reshape(-1).detach()
    low, high = slope_range(0.9, variant)
    assert float(slopes.min()) >= low - TOL and float(slopes.max()) <= high + TOL
    with torch.no_grad():
        _, logdet = model(x)
    torch.testing.assert_close(logdet, slopes.abs().log(), atol=1e-9, rtol=0)  # the shipped exact log-dets


def test_slope_ranges_of_the_variants() -> None:
    L = 0.6
    assert slope_range(L, "residual") == pytest.approx(((1 - L) ** 2, (1 + L) ** 2))
    assert slope_range(L, "scaled_inverse_residual") == pytest.approx(((1 - L) / (1 + L), (1 + L) / (1 - L)))
    assert slope_range(L, "scaled_monotone") == pytest.approx((((1 - L) / (1 + L)) ** 2, ((1 + L) / (1 - L)) ** 2))
    assert slope_range(0.98, "residual")[1] < 10 < slope_range(0.98, "scaled_monotone")[1]  # impflowfunc: slope 10
    with pytest.raises(ValueError, match="variant must be one of: residual, "):
        slope_range(L, "RR")
    with pytest.raises(ValueError, match="variant must be one of: residual, "):
        build_fit1d("RR")


def test_scaled_and_inverted_transforms() -> None:
    g = _random_branch(0.7, 2, seed=4)
    block = ResidualBlock(g, logdet=EXACT, solver=SOLVER)
    x = _points(2, seed=8, n=12)
    for transform in (Inverted(block), Scaled(block), Scaled(Inverted(block))):
        if isinstance(transform, Scaled):
            with torch.no_grad():
                transform.log_scale.fill_(0.4)
        with torch.no_grad():
            z, logdet = transform(x)
            torch.testing.assert_close(transform.inverse(z), x, atol=1e-10, rtol=0)
        torch.testing.assert_close(logdet, torch.linalg.slogdet(_jac(lambda v, t=transform: t(v)[0], x)).logabsdet)
        assert transform.kind == "exact"
