"""The residual, monotone and implicit blocks on the shared core (float64).

Round trips, log-dets against the brute-force Jacobian of the whole block, implicit gradients against
``torch.autograd.gradcheck`` on a tight solve, non-convergence reported as ``ConvergenceError``, the monotone
block's defining identities (x = (w + g(w))/√2, y = (w − g(w))/√2), and the √2-scaled Cayley map itself.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import nflab.flows as F
from nflab.flows.blocks import ImplicitBlock, MonotoneBlock, ResidualBlock
from nflab.flows.layers.dense import dense_net
from nflab.flows.layers.lipschitz_nets import lipschitz_mlp
from nflab.flows.logdet import LogDetConfig
from nflab.flows.solvers import ConvergenceError, SolverConfig

EXACT = LogDetConfig(kind="exact")
TIGHT = SolverConfig(tol=1e-12, max_iter=4000, backward_tol=1e-12, backward_max_iter=500)


def _perturbed(module: nn.Module, scale: float, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    F.hooks.before_evaluation(module)  # converge σ̂ on the new weights
    return module


def _branch(d: int, kind: str) -> nn.Module:
    if kind == "dense":
        g = dense_net(d, d, depth=2, growth=8, activation="cpila", coeff=0.9, lip_coeff=0.98, conv=False)
    else:
        g = lipschitz_mlp(d, (16, 16), d, activation="lipswish", coeff=0.9)
    return _perturbed(g.double(), 0.3)


def _block(kind: str, d: int = 3, solver: SolverConfig = TIGHT) -> nn.Module:
    if kind == "residual":
        return ResidualBlock(_branch(d, "mlp"), logdet=EXACT, solver=solver).double()
    if kind == "monotone":
        return MonotoneBlock(_branch(d, "dense"), logdet=EXACT, solver=solver).double()
    return ImplicitBlock(_branch(d, "mlp"), _branch(d, "mlp"), logdet=EXACT, solver=solver).double()


KINDS = ["residual", "monotone", "implicit"]


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_and_logdet_against_the_brute_force_jacobian(kind: str) -> None:
    block = _block(kind).eval()
    x = 2.0 * torch.randn(16, 3, dtype=torch.float64)
    y, logdet = block(x)
    assert (block.inverse(y) - x).abs().max() < 1e-8
    assert (y - x).abs().max() > 1e-2  # not the identity: the test can see a broken block
    jac = torch.stack([torch.autograd.functional.jacobian(lambda v: block(v.unsqueeze(0))[0][0], xi) for xi in x])
    torch.testing.assert_close(logdet, torch.linalg.slogdet(jac).logabsdet, atol=1e-8, rtol=1e-8)


def test_monotone_block_solves_the_scaled_cayley_map() -> None:
    """y = (w − g(w))/√2 and x = (w + g(w))/√2 for the w the block solved; F = ((Id + G)/2)^{-1} − Id."""
    block = _block("monotone").eval()
    g = block.g
    x = torch.randn(8, 3, dtype=torch.float64)
    y, _ = block(x)
    w = (x + y) / math.sqrt(2)  # y = √2·w − x
    torch.testing.assert_close((w + g(w)) / math.sqrt(2), x, atol=1e-10, rtol=0)
    torch.testing.assert_close((w - g(w)) / math.sqrt(2), y, atol=1e-10, rtol=0)

    def big_g(u: torch.Tensor) -> torch.Tensor:  # G(u) = √2·g(u/√2)
        return math.sqrt(2) * g(u / math.sqrt(2))

    u = x + y  # (Id + G)/2 applied to u must give x: u = F(x) + x
    torch.testing.assert_close((u + big_g(u)) / 2, x, atol=1e-10, rtol=0)


@pytest.mark.parametrize("direct", [True, False], ids=["direct-backward", "iterative-backward"])
@pytest.mark.parametrize("kind", KINDS)
def test_implicit_gradients_pass_gradcheck(kind: str, direct: bool) -> None:
    block = _block(kind, d=2, solver=TIGHT.updated(backward_direct=direct)).train()  # the log-det carries a graph
    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: block(v)[0], (x,), eps=1e-6, atol=1e-6)
    assert torch.autograd.gradcheck(lambda v: block(v)[1], (x,), eps=1e-6, atol=1e-6)
    assert torch.autograd.gradcheck(lambda v: block.inverse(v), (x,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("direct", [True, False], ids=["direct-backward", "iterative-backward"])
@pytest.mark.parametrize("kind", KINDS)
def test_parameter_gradients_match_finite_differences(kind: str, direct: bool) -> None:
    """d(Σ y + Σ logdet)/dθ for one weight of the branch, through implicit differentiation, vs central differences."""
    block = _block(kind, d=2, solver=TIGHT.updated(backward_direct=direct)).train()
    x = torch.randn(4, 2, dtype=torch.float64)
    weight = next(p for n, p in block.named_parameters() if n.endswith("weight"))

    def objective() -> torch.Tensor:
        y, logdet = block(x)
        return y.sum() + logdet.sum()

    block.zero_grad()
    objective().backward()
    analytic = weight.grad[0, 0].item()
    eps = 1e-5
    with torch.no_grad():
        weight[0, 0] += eps
        plus = objective().item()
        weight[0, 0] -= 2 * eps
        minus = objective().item()
        weight[0, 0] += eps
    assert analytic == pytest.approx((plus - minus) / (2 * eps), rel=1e-5, abs=1e-7)


def _expanding(d: int) -> nn.Module:
    """g(x) = 3·x·(−1): Lip 3, so x ← b − g(x) = b + 3x diverges (a Lipschitz bound that does not hold)."""
    lin = nn.Linear(d, d, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(-3.0 * torch.eye(d, dtype=torch.float64))
    return lin


@pytest.mark.parametrize("kind", KINDS)
def test_a_non_contractive_branch_raises_convergence_error(kind: str) -> None:
    solver = SolverConfig(method="plain", tol=1e-8, max_iter=50)
    if kind == "residual":
        block = ResidualBlock(_expanding(2), logdet=EXACT, solver=solver)
    elif kind == "monotone":
        block = MonotoneBlock(_expanding(2), logdet=EXACT, solver=solver)
    else:
        block = ImplicitBlock(_expanding(2), _expanding(2), logdet=EXACT, solver=solver)
    x = torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(ConvergenceError, match=r"did not converge: residual .* after 50 iterations \(plain\)"):
        block.inverse(x) if kind == "residual" else block(x)


def test_estimator_options_come_from_the_pipeline_on_top_of_the_built_defaults() -> None:
    flow = F.build("resflow", (2,), preset="small")
    block = next(m for m in flow.modules() if isinstance(m, ResidualBlock))
    assert (block.logdet_config.kind, block.logdet_config.dist) == ("roulette", "geometric")
    F.hooks.configure_estimator(flow, {"estimator": "truncated", "n_terms": 7, "dist": None})
    assert (block.logdet_config.kind, block.logdet_config.n_terms, block.logdet_config.dist) == (
        "truncated",
        7,
        "geometric",
    )
    assert flow.logdet_kind == "biased"
    F.hooks.configure_estimator(flow, {"probe": "rademacher"})  # starts from the built defaults
    assert (block.logdet_config.kind, block.logdet_config.probe) == ("roulette", "rademacher")
    with pytest.raises(ValueError, match="geom_p"):
        F.hooks.configure_estimator(flow, {"geom_p": 1.5})


def test_published_defaults_of_the_lipschitz_families() -> None:
    resflow = F.build("resflow", (2,))
    blocks = [m for m in resflow.modules() if isinstance(m, ResidualBlock)]
    assert len(blocks) == 100 and blocks[0].logdet_config.kind == "roulette"
    assert blocks[0].logdet_config.dist == "geometric" and blocks[0].logdet_config.n_exact_terms == 2
    iresnet = F.build("iresnet", (2,))
    iblock = next(m for m in iresnet.modules() if isinstance(m, ResidualBlock))
    assert (iblock.logdet_config.kind, iblock.logdet_config.n_terms) == ("truncated", 5)
    mono = F.build("monotone", (2,))
    mblocks = [m for m in mono.modules() if isinstance(m, MonotoneBlock)]
    assert len(mblocks) == 10 and mblocks[0].logdet_config.kind == "exact"
    assert (mblocks[0].solver_config.tol, mblocks[0].solver_config.backward_tol) == (1e-6, 1e-9)
    cfg = F.resolve_config("monotone")
    assert (cfg.activation, cfg.dense_depth, cfg.lip_coeff) == ("cpila", 3, 0.98)
    assert (cfg.cpila_k, cfg.cpila_shift) == (5.0, 0.2)
    image = F.build("resflow", (3, 8, 8), blocks=(1, 1), channels=8, fc_blocks=1, fc_hidden=8)
    rblock = next(m for m in image.modules() if isinstance(m, ResidualBlock))
    assert (rblock.logdet_config.dist, rblock.logdet_config.neumann_grad, rblock.logdet_config.memory_efficient) == (
        "poisson",
        True,
        True,
    )
    implicit = F.build("implicit", (2,))
    assert sum(isinstance(m, ImplicitBlock) for m in implicit.modules()) == 6


@pytest.mark.parametrize("kind", ["monotone", "implicit"])
def test_direct_backward_skips_the_iterations_and_equals_the_iterative_one(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the exact log-det the block hands J_g(w*) to its backward, which solves (I + J)ᵀu = ḡ directly."""
    from nflab.flows.solvers import implicit

    calls: list[int] = []
    original = implicit.fixed_point
    monkeypatch.setattr(implicit, "fixed_point", lambda *a, **k: calls.append(1) or original(*a, **k))
    grads = {}
    for direct in (True, False):
        torch.manual_seed(0)
        block = _block(kind, d=3, solver=TIGHT.updated(backward_direct=direct)).train()
        x = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
        calls.clear()
        y, logdet = block(x)
        (y.square().sum() + logdet.sum()).backward()
        grads[direct] = [x.grad, *(p.grad for p in block.parameters() if p.grad is not None)]
        assert (len(calls) == 0) == direct, calls  # the iterative backward solves with fixed_point
    assert len(grads[True]) == len(grads[False]) > 1
    for a, b in zip(grads[True], grads[False], strict=True):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)
