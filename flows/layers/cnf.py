"""Continuous normalizing flow (Chen et al. 2018; FFJORD, Grathwohl et al. 2019): z = x + ∫₀ᵀ f(t, z(t)) dt with
log|det ∂z/∂x| = ∫₀ᵀ tr(∂f/∂z) dt, integrated by torchdiffeq (data at t = 0, latent at t = T; inverse T → 0).

The end time is T = s² with s trainable (initialised to √T₀). The solver runs on unit time τ = t/T ∈ [0, 1] with the
dynamics T·f(τT, z) — the same ODE — so that T is an ordinary parameter of the dynamics and gets exact gradients,
also through the adjoint. Optional regularisers (Finlay et al. 2020) are integrated as extra states:
kinetic energy ∫ ‖f‖²/D dt and Jacobian Frobenius norm ∫ ‖∂f/∂z‖²_F/D dt (D = dimension of one sample).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint

from ..logdet.config import ProbeKind
from ..logdet.probes import sample_probe
from ..options import ConfigError
from ..transform import LogdetKind, Transform
from .divergence import DIVERGENCES, DivergenceKind, exact_divergence, hutchinson_divergence

SolverName = Literal["dopri5", "dopri8", "bosh3", "adaptive_heun", "rk4", "midpoint", "euler"]
ADAPTIVE_SOLVERS: tuple[str, ...] = ("dopri5", "dopri8", "bosh3", "adaptive_heun")
FIXED_STEP_SOLVERS: tuple[str, ...] = ("rk4", "midpoint", "euler")
NOISE_KINDS: tuple[str, ...] = ("gaussian", "rademacher")


_PHASES = {
    "forward": "forward solve (data → latent)",
    "inverse": "inverse solve (latent → data)",
    "backward": "adjoint solve of the backward pass",
}


def _all_finite(state: Tensor | tuple[Tensor, ...]) -> bool:
    tensors = state if isinstance(state, tuple) else (state,)
    return all(bool(torch.isfinite(s).all()) for s in tensors)


class SkipZeroCotangent(torch.autograd.Function):
    """Identity whose backward drops an all-zero cotangent (returns None), so that autograd does not run the
    (double-backward) graph behind it for nothing: torchdiffeq concatenates the state, so a loss of z alone still
    sends explicit zeros into the divergence graph. Exact: a zero cotangent contributes nothing."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor | None:
        return grad if bool(grad.any()) else None


class ODESolveError(RuntimeError):
    """A stiff or diverging ODE solve (step-size underflow, non-finite state, too many steps)."""


@dataclass(frozen=True)
class ODESolverOptions:
    """How a CNF is integrated: a torchdiffeq ``method``, tolerances (adaptive methods), ``step_size`` in units of
    t (fixed-step methods), adjoint backpropagation (O(1) memory in the number of steps) and a step budget."""

    method: SolverName = "dopri5"
    atol: float = 1e-5
    rtol: float = 1e-5
    step_size: float | None = None
    adjoint: bool = True
    max_steps: int = 10_000

    def __post_init__(self) -> None:
        solvers = ADAPTIVE_SOLVERS + FIXED_STEP_SOLVERS
        if self.method not in solvers:
            raise ValueError(f"solver: {self.method!r} is not one of: {', '.join(solvers)}")
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name}: {value!r} is not a number > 0")
        if self.method in FIXED_STEP_SOLVERS and (self.step_size is None or not self.step_size > 0):
            raise ValueError(f"step_size: {self.step_size!r} is not a number > 0 (required by solver {self.method})")
        if self.step_size is not None and not self.step_size > 0:
            raise ValueError(f"step_size: {self.step_size!r} is not a number > 0 or None")
        if self.max_steps < 1:
            raise ValueError(f"max_steps: {self.max_steps!r} is not an integer >= 1")

    @property
    def adaptive(self) -> bool:
        return self.method in ADAPTIVE_SOLVERS


class CNFDynamics(nn.Module):
    """The augmented ODE on unit time: d/dτ (z, log det, E, F) = T·(f, tr ∂f/∂z, ‖f‖²/D, ‖∂f/∂z‖²_F/D) at t = τT.

    Called with a bare tensor it returns T·f only (the inverse needs no divergence). It counts its evaluations per
    phase (``forward`` solve, ``inverse`` solve, and ``backward`` = everything after a solve, i.e. the adjoint pass)
    and checks every solver step through torchdiffeq's step callbacks, so that failures carry time and step size.
    """

    def __init__(self, net: nn.Module, end_time: float, train_end_time: bool, options: ODESolverOptions) -> None:
        super().__init__()
        self.net = net
        sqrt_t = torch.tensor(math.sqrt(end_time))
        if train_end_time:
            self.sqrt_end_time = nn.Parameter(sqrt_t)
        else:
            self.register_buffer("sqrt_end_time", sqrt_t)
        self.options = options
        # set by the CNF before each solve
        self.exact = True
        self.noise: Tensor | None = None
        self.kinetic = False
        self.frobenius = False
        self.phase = "backward"
        self.evaluations = {"forward": 0, "backward": 0, "inverse": 0}
        self.steps = {"forward": 0, "backward": 0, "inverse": 0}
        self.last_tau = 0.0
        self.last_step = math.nan

    @property
    def end_time(self) -> Tensor:
        """T = s²."""
        return self.sqrt_end_time.pow(2)

    def begin(self, phase: str) -> None:
        """Start counting a ``forward`` or ``inverse`` solve (a forward also restarts the backward counters)."""
        self.phase = phase
        self.evaluations[phase] = self.steps[phase] = 0
        if phase == "forward":
            self.evaluations["backward"] = self.steps["backward"] = 0
        self.last_tau, self.last_step = (1.0 if phase == "inverse" else 0.0), math.nan

    def forward(self, tau: Tensor, state: Tensor | tuple[Tensor, ...]) -> Tensor | tuple[Tensor, ...]:
        self.evaluations[self.phase] += 1
        end_time = self.end_time
        t = tau * end_time
        if isinstance(state, Tensor):
            return self.net(t, state) * end_time
        z = state[0]
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            if not (create_graph and z.requires_grad):  # a fresh leaf unless the outer graph must reach z
                z = z.detach().requires_grad_()
            f = self.net(t, z)
            if self.exact:
                div, frob = exact_divergence(f, z, frobenius=self.frobenius, create_graph=create_graph)
            else:
                assert self.noise is not None
                div, frob = hutchinson_divergence(f, z, self.noise, frobenius=self.frobenius, create_graph=create_graph)
        out = [f * end_time, div * end_time]
        if self.kinetic:
            out.append(f.pow(2).reshape(f.shape[0], -1).mean(dim=1) * end_time)
        if frob is not None:
            out.append(frob * (end_time / z[0].numel()))
        if create_graph:  # the scalar states' graphs are skipped when their cotangent is zero (e.g. ∂z/∂x only)
            out[1:] = [SkipZeroCotangent.apply(v) for v in out[1:]]
        return tuple(out)

    # torchdiffeq calls these before every step (t0 in the caller's time, dt > 0)
    def callback_step(self, t0: Tensor, y0: Tensor | tuple[Tensor, ...], dt: Tensor) -> None:
        self._check_step(t0, y0, dt, self.phase)

    def callback_step_adjoint(self, t0: Tensor, y0: Tensor | tuple[Tensor, ...], dt: Tensor) -> None:
        self._check_step(t0, y0, dt, "backward")

    def _check_step(self, t0: Tensor, y0: Tensor | tuple[Tensor, ...], dt: Tensor, phase: str) -> None:
        self.steps[phase] += 1
        self.last_tau, self.last_step = float(t0.detach()), float(dt.detach())
        # adaptive forward/inverse solves: torchdiffeq's own finiteness assert follows (wrapped in CNF._solve); fixed
        # grids do not check, and in the adjoint pass the assert would escape from autograd's backward unwrapped
        if (phase == "backward" or not self.options.adaptive) and not _all_finite(y0):
            raise self.failure(f"non-finite state before a step of size {self.t_units(self.last_step):.2g}", phase)
        if not bool(t0 + dt > t0):
            if self.last_step == 0.0:  # torchdiffeq's fallback for a non-finite step size proposal
                raise self.failure("step size 0 underflow after a non-finite error estimate: NaN/inf in f", phase)
            raise self.failure(f"step size {self.t_units(self.last_step):.2g} underflow", phase)
        if self.steps[phase] > self.options.max_steps:
            raise self.failure(f"more than max_steps={self.options.max_steps} steps", phase)

    def t_units(self, tau: float) -> float:
        """A duration or time on the unit τ-scale in units of t."""
        return tau * self.end_time.item()

    def failure(self, reason: str, phase: str | None = None) -> ODESolveError:
        """An ODESolveError naming the time reached, T, the reason, solver and tolerances."""
        opts = self.options
        solver = f"{opts.method}, atol {opts.atol:g}, rtol {opts.rtol:g}" if opts.adaptive else opts.method
        return ODESolveError(
            f"ODE solve failed at t={self.t_units(abs(self.last_tau)):.3g} of T={self.end_time.item():.3g} "
            f"({reason}, {solver}) in the {_PHASES[phase or self.phase]}"
        )


class CNF(Transform):
    """One FFJORD block: forward(x) = (z(T), ∫₀ᵀ tr ∂f/∂z dt), inverse integrates T → 0; log p(x) = log N(z) + logdet.

    ``divergence``: ``brute_force`` (exact, D VJPs per evaluation — log-det kind ``exact``) or ``hutchinson``
    (εᵀ(∂f/∂z)ε with ε drawn once per forward call from ``generator`` and fixed for every solver step of that
    call, the adjoint pass included — kind ``unbiased``). The exact divergence is used anyway in eval mode when a
    sample has at most ``exact_eval_max_dim`` dimensions (FFJORD's 2-D rule), under ``exact_override``
    (``nflab.flows.exact``) and after ``configure_estimator({"estimator": "exact"})``. Regulariser coefficients > 0 add
    their penalty of the last training-mode forward to :meth:`regularization_loss`; the number of function
    evaluations (NFE) per phase is in :meth:`training_metrics` and the ``nfe_*`` attributes.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        end_time: float = 0.5,
        train_end_time: bool = True,
        divergence: DivergenceKind = "brute_force",
        noise: ProbeKind = "gaussian",
        exact_eval_max_dim: int = 2,
        solver: ODESolverOptions | None = None,
        kinetic_energy: float = 0.0,
        jacobian_frobenius: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if divergence not in DIVERGENCES:
            raise ValueError(f"divergence: {divergence!r} is not one of: {', '.join(DIVERGENCES)}")
        if noise not in NOISE_KINDS:
            raise ValueError(f"noise: {noise!r} is not one of: {', '.join(NOISE_KINDS)}")
        if not end_time > 0:
            raise ValueError(f"end_time: {end_time!r} is not a number > 0")
        if exact_eval_max_dim < 0:
            raise ValueError(f"exact_eval_max_dim: {exact_eval_max_dim!r} is not an integer >= 0")
        for name, value in (("kinetic_energy", kinetic_energy), ("jacobian_frobenius", jacobian_frobenius)):
            if not value >= 0:
                raise ValueError(f"{name}: {value!r} is not a number >= 0")
        self.dynamics = CNFDynamics(net, end_time, train_end_time, solver or ODESolverOptions())
        self.divergence = divergence
        self.built_noise = noise
        self.noise_kind: str = noise
        self.exact_eval_max_dim = int(exact_eval_max_dim)
        self.kinetic_energy = float(kinetic_energy)
        self.jacobian_frobenius = float(jacobian_frobenius)
        self.generator = generator
        self.estimator_exact = False  # configure_estimator({"estimator": "exact"})
        self.exact_override = False  # nflab.flows.exact.exact_logdets
        self._regularization: Tensor | None = None

    @property
    def kind(self) -> LogdetKind:
        return "exact" if self.divergence == "brute_force" or self.estimator_exact else "unbiased"

    @property
    def end_time(self) -> Tensor:
        """T = s²."""
        return self.dynamics.end_time

    @property
    def solver(self) -> ODESolverOptions:
        return self.dynamics.options

    def uses_exact_divergence(self, dim: int) -> bool:
        """Whether a forward call on samples of ``dim`` dimensions computes tr(∂f/∂z) exactly."""
        if self.kind == "exact" or self.exact_override:
            return True
        return not self.training and dim <= self.exact_eval_max_dim

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        dyn = self.dynamics
        dyn.exact = self.uses_exact_divergence(x[0].numel())
        dyn.noise = None if dyn.exact else sample_probe(x, self.noise_kind, self.generator)  # type: ignore[arg-type]
        dyn.kinetic = self.training and self.kinetic_energy > 0
        dyn.frobenius = self.training and self.jacobian_frobenius > 0
        zeros = x.new_zeros(x.shape[0])
        state = (x, zeros) + (zeros,) * (int(dyn.kinetic) + int(dyn.frobenius))
        z, logdet, *penalties = self._solve(state, "forward")
        self._regularization = None
        if penalties:
            weights = [
                c for c, on in ((self.kinetic_energy, dyn.kinetic), (self.jacobian_frobenius, dyn.frobenius)) if on
            ]
            self._regularization = sum(w * p.mean() for w, p in zip(weights, penalties))  # type: ignore[assignment]
        return z, logdet

    def inverse(self, z: Tensor) -> Tensor:
        return self._solve((z,), "inverse")[0]

    def __getstate__(self) -> dict[str, Any]:
        """Pickling / deepcopy: the penalty of the last forward holds an autograd graph; it is not copied."""
        state = self.__dict__.copy()
        state["_regularization"] = None
        return state

    def _solve(self, state: tuple[Tensor, ...], phase: str) -> tuple[Tensor, ...]:
        """Integrate ``state`` over unit time (0 → 1 for ``forward``, 1 → 0 for ``inverse``); errors → ODESolveError."""
        dyn, opts = self.dynamics, self.dynamics.options
        ref = state[0]
        times = torch.tensor([0.0, 1.0] if phase == "forward" else [1.0, 0.0], dtype=ref.dtype, device=ref.device)
        y0: Tensor | tuple[Tensor, ...] = state if len(state) > 1 else state[0]
        step = {} if opts.adaptive else {"step_size": opts.step_size / dyn.end_time.item()}  # type: ignore[operator]
        kwargs: dict[str, Any] = {"rtol": opts.rtol, "atol": opts.atol, "method": opts.method, "options": step}
        dyn.begin(phase)
        try:
            if opts.adjoint and torch.is_grad_enabled():
                params = tuple(p for p in dyn.parameters() if p.requires_grad)  # incl. s of T = s²
                solution = odeint_adjoint(dyn, y0, times, adjoint_params=params, **kwargs)
            else:
                solution = odeint(dyn, y0, times, **kwargs)
        except AssertionError as err:  # torchdiffeq reports a non-finite state (and other failures) by assert
            reason = str(err).split(":")[0].replace("values in state `y`", "state")
            raise dyn.failure(f"{reason} before a step of size {dyn.t_units(dyn.last_step):.2g}") from err
        finally:
            dyn.phase = "backward"
        final = tuple(s[-1] for s in solution) if isinstance(solution, tuple) else (solution[-1],)
        if not _all_finite(final):
            dyn.last_tau = 1.0 if phase == "forward" else 0.0
            raise dyn.failure("non-finite result", phase)
        return final

    # --- hooks found by duck typing (nflab.flows.hooks) -----------------------------------------------------------
    def configure_estimator(self, options: Mapping[str, Any]) -> None:
        """The estimator options that apply to a CNF: ``estimator: exact`` → exact divergence (any other value: the
        built one); ``probe``: gaussian / rademacher noise (null: the built one). Series options are ignored."""
        self.estimator_exact = options.get("estimator") == "exact"
        noise = options.get("probe")
        if noise is not None and noise not in NOISE_KINDS:
            raise ConfigError(("probe",), noise, f"one of: {', '.join(NOISE_KINDS)}")
        self.noise_kind = noise if noise is not None else self.built_noise

    def regularization_loss(self) -> Tensor | None:
        """κ·mean ∫‖f‖²/D dt + λ·mean ∫‖∂f/∂z‖²_F/D dt of the last forward in training mode; None if off or in eval."""
        return self._regularization

    def training_metrics(self) -> dict[str, float]:
        """NFE of the last forward solve and of the backward pass after it, and T (summed over blocks: Σ T)."""
        return {
            "nfe_forward": float(self.nfe_forward),
            "nfe_backward": float(self.nfe_backward),
            "integration_time": self.end_time.item(),
        }

    @property
    def nfe_forward(self) -> int:
        """Function evaluations of the last forward solve."""
        return self.dynamics.evaluations["forward"]

    @property
    def nfe_backward(self) -> int:
        """Evaluations since the last forward outside any solve: the adjoint pass (0 with ``adjoint=False``, whose
        backward runs through the recorded solver graph instead)."""
        return self.dynamics.evaluations["backward"]

    @property
    def nfe_inverse(self) -> int:
        """Function evaluations of the last inverse solve."""
        return self.dynamics.evaluations["inverse"]

    def extra_repr(self) -> str:
        o = self.solver
        return (
            f"T={self.end_time.item():.3g}, divergence={self.divergence}, noise={self.noise_kind}, solver={o.method}, "
            f"atol={o.atol:g}, rtol={o.rtol:g}, adjoint={o.adjoint}"
        )


def set_noise_generator(module: nn.Module, generator: torch.Generator | None) -> None:
    """Draw the Hutchinson noise of every CNF inside ``module`` from ``generator`` (None: the global RNG)."""
    for m in module.modules():
        if isinstance(m, CNF):
            m.generator = generator
