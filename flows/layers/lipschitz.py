"""Lipschitz-constrained linear and conv layers by soft normalisation (Behrmann et al. 2019; Chen et al. 2019).

σ̂ = uᵀWv with cached power-iteration vectors u, v (no gradient; the gradient flows through W) and
W_used = W / max(1, σ̂ / coeff), so ‖W_used‖_{p→q} ≤ coeff up to the power-iteration error and weights already
below ``coeff`` are left untouched. ``forward`` never iterates: the trainer advances u, v through the hooks
``after_optimizer_step`` (training budget) and ``before_evaluation`` (evaluation budget), see ``nflab.flows.hooks``.
For a k×k convolution the operator is the whole convolution at the real input size (tight σ̂), so u, v have
C·H·W entries and are allocated at the first forward; a 1×1 convolution is treated as its C_out×C_in matrix.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .induced_norm import INF, check_norm_order, closed_form_norm, has_closed_form, normalize_u, normalize_v

INIT_ITERATIONS = 200
"""Power iterations run when u, v are created (construction for dense layers, first forward for k×k convs)."""

INIT_RESTARTS = 10
"""Random restarts at creation for induced norms other than (2, 2) without a closed form; the best σ̂ is kept."""

_UNSET: Any = object()


def _check_iterations(option: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{option} must be a non-negative integer or None, got {value!r}")
    return value


def _check_tol(option: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 or math.isinf(value):
        raise ValueError(f"{option} must be a positive finite number or None, got {value!r}")
    return float(value)


def check_positive_int(option: str, value: int) -> int:
    """``value`` if it is an integer ≥ 1, else a one-line ``ValueError`` naming ``option``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{option} must be a positive integer, got {value!r}")
    return value


def check_positive_number(option: str, value: float) -> float:
    """``value`` as a float if it is finite and > 0, else a one-line ``ValueError`` naming ``option``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 or math.isinf(value):
        raise ValueError(f"{option} must be a positive finite number, got {value!r}")
    return float(value)


def _pair(option: str, value: int | tuple[int, int], *, minimum: int) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in pair):
        raise ValueError(f"{option} must be an integer ≥ {minimum} or a pair of them, got {value!r}")
    return pair  # type: ignore[return-value]


class LipschitzNormalizedLayer(nn.Module):
    """Shared mechanism: σ̂, soft normalisation, power iterations, budgets, hooks, freezing.

    Subclasses own ``weight`` (and optional ``bias``) and implement the operator W on flat vectors
    (``_apply_operator``), its adjoint Wᵀ (``_apply_adjoint``), the sizes of u and v, and the layer map itself.
    """

    weight: nn.Parameter
    bias: nn.Parameter | None
    has_dense_matrix = False
    """Whether ``_weight_matrix`` is W itself (a dense layer), so that its SVD gives the spectral pair at creation."""

    def __init__(self, *, coeff: float, domain: float, codomain: float) -> None:
        super().__init__()
        self.coeff = check_positive_number("coeff", coeff)
        self.domain = check_norm_order("domain", domain)
        self.codomain = check_norm_order("codomain", codomain)
        self.closed_form = has_closed_form(self.domain, self.codomain)
        self.train_iterations: int | None = 5
        self.train_tol: float | None = None
        self.eval_iterations: int | None = 200
        self.eval_tol: float | None = None
        self.max_power_iterations = INIT_ITERATIONS
        self.frozen = False
        self.last_power_iterations = 0
        self.register_buffer("u", None)
        self.register_buffer("v", None)

    # ---- operator, implemented by subclasses -------------------------------------------------------------------
    def _apply_operator(self, v: Tensor, weight: Tensor) -> Tensor:
        """W v for a flat v (size ``_vector_sizes()[1]``), flat result."""
        raise NotImplementedError

    def _apply_adjoint(self, u: Tensor, weight: Tensor) -> Tensor:
        """Wᵀ u for a flat u (size ``_vector_sizes()[0]``), flat result."""
        raise NotImplementedError

    def _vector_sizes(self) -> tuple[int, int]:
        """(size of u, size of v)."""
        raise NotImplementedError

    def _weight_matrix(self) -> Tensor:
        """W as an ``[out, in]`` matrix (only needed for the closed-form norms)."""
        raise NotImplementedError

    def _layer(self, x: Tensor, weight: Tensor) -> Tensor:
        raise NotImplementedError

    # ---- σ̂ and the normalised weight ------------------------------------------------------------------------
    @property
    def is_initialized(self) -> bool:
        """False only for a k×k conv before its first forward (u, v are sized by the input)."""
        return self.closed_form or self.u is not None

    def _sigma(self) -> Tensor:
        """σ̂ = uᵀWv (or the exact closed form), differentiable in W; u, v are constants."""
        if self.closed_form:
            return closed_form_norm(self._weight_matrix(), self.domain, self.codomain)
        if self.u is None or self.v is None:
            raise RuntimeError(f"{type(self).__name__}: σ̂ does not exist before the first forward (u, v are lazy)")
        return torch.dot(self.u, self._apply_operator(self.v, self.weight))

    def normalized_weight(self) -> Tensor:
        """W / max(1, σ̂ / coeff) — the weight the layer uses (as-is once frozen)."""
        if self.frozen:
            return self.weight
        return self.weight / torch.clamp(self._sigma() / self.coeff, min=1.0)

    def estimated_norm(self) -> float:
        """Current σ̂ of the raw weight (of the stored, already-normalised weight once frozen)."""
        with torch.no_grad():
            return float(self._sigma())

    def lipschitz_bound(self) -> float:
        """min(σ̂, coeff): the p→q Lipschitz constant the layer claims for its normalised weight."""
        return min(self.estimated_norm(), self.coeff)

    def forward(self, x: Tensor) -> Tensor:
        self._prepare(x)
        return self._layer(x, self.normalized_weight())

    def _prepare(self, x: Tensor) -> None:
        """Hook for lazily created u, v (k×k convs); dense layers have them from construction."""

    # ---- power iterations ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def _random_vectors(self) -> tuple[Tensor, Tensor]:
        n_u, n_v = self._vector_sizes()
        like = self.weight
        u = normalize_u(torch.randn(n_u, dtype=like.dtype, device=like.device), self.codomain)
        v = normalize_v(torch.randn(n_v, dtype=like.dtype, device=like.device), self.domain)
        return u, v

    @torch.no_grad()
    def _iterate(
        self, u: Tensor, v: Tensor, n_iterations: int | None, tol: float | None, max_iterations: int
    ) -> tuple[Tensor, Tensor, int]:
        weight = self.weight.detach()
        limit = n_iterations if n_iterations is not None else max_iterations
        done = 0
        while done < limit:
            u_old, v_old = u, v
            u = normalize_u(self._apply_operator(v, weight), self.codomain)
            v = normalize_v(self._apply_adjoint(u, weight), self.domain)
            done += 1
            if tol is not None:
                err_u = torch.linalg.vector_norm(u - u_old) / math.sqrt(u.numel())
                err_v = torch.linalg.vector_norm(v - v_old) / math.sqrt(v.numel())
                if err_u < tol + tol * u.abs().max() and err_v < tol + tol * v.abs().max():
                    break
        return u, v, done

    @torch.no_grad()
    def _initialize_vectors(self) -> None:
        """Fresh u, v with ``INIT_ITERATIONS`` iterations; ``INIT_RESTARTS`` random restarts for non-(2, 2).

        A dense layer in the spectral norm takes its top singular pair from the SVD instead, W v₁ = σ₁ u₁: exact, and
        3× (128×128) to 40× (2×128) cheaper than the iterations. The random start is still drawn, so later layers'
        seeded draws are unchanged."""
        spectral = (self.domain, self.codomain) == (2.0, 2.0)
        restarts = 1 if spectral else INIT_RESTARTS
        best: tuple[Tensor, Tensor] | None = None
        best_sigma = -math.inf
        for _ in range(restarts):
            u, v = self._random_vectors()
            if spectral and self.has_dense_matrix:
                left, _, right = torch.linalg.svd(self._weight_matrix().detach(), full_matrices=False)
                self.u, self.v = left[:, 0].contiguous(), right[0].contiguous()
                return
            u, v, _ = self._iterate(u, v, INIT_ITERATIONS, None, INIT_ITERATIONS)
            sigma = float(torch.dot(u, self._apply_operator(v, self.weight)))
            if sigma > best_sigma:
                best, best_sigma = (u, v), sigma
        assert best is not None
        self.u, self.v = best

    @torch.no_grad()
    def update_lipschitz(
        self, n_iterations: int | None = None, tol: float | None = None, max_iterations: int = INIT_ITERATIONS
    ) -> int:
        """Advance u, v; returns the number of iterations run (0 when frozen, closed-form or not yet allocated).

        ``n_iterations`` alone: exactly that many. ``tol`` alone: until ‖u − u_old‖/√n_u < tol + tol·max|u| and
        the same for v, at most ``max_iterations``. Both: at most ``n_iterations``, stopping early at ``tol``.
        """
        n_iterations = _check_iterations("n_iterations", n_iterations)
        tol = _check_tol("tol", tol)
        if _check_iterations("max_iterations", max_iterations) is None:
            raise ValueError("max_iterations must be a non-negative integer, got None")
        if n_iterations is None and tol is None:
            raise ValueError("update_lipschitz needs n_iterations (an integer ≥ 0) or tol (> 0), got neither")
        if self.frozen or self.closed_form or self.u is None or self.v is None:
            self.last_power_iterations = 0
            return 0
        u, v, done = self._iterate(self.u, self.v, n_iterations, tol, max_iterations)
        self.u, self.v = u, v  # rebinding (not in place): a graph still holding the old u, v stays valid
        self.last_power_iterations = done
        return done

    # ---- budgets and trainer hooks ------------------------------------------------------------------------------
    def set_power_budget(
        self,
        *,
        train_iterations: int | None = _UNSET,
        train_tol: float | None = _UNSET,
        eval_iterations: int | None = _UNSET,
        eval_tol: float | None = _UNSET,
        max_iterations: int = _UNSET,
    ) -> None:
        """Change the power-iteration budgets (only the ones passed). Iterations and tol both None: no update."""
        if train_iterations is not _UNSET:
            self.train_iterations = _check_iterations("train_iterations", train_iterations)
        if train_tol is not _UNSET:
            self.train_tol = _check_tol("train_tol", train_tol)
        if eval_iterations is not _UNSET:
            self.eval_iterations = _check_iterations("eval_iterations", eval_iterations)
        if eval_tol is not _UNSET:
            self.eval_tol = _check_tol("eval_tol", eval_tol)
        if max_iterations is not _UNSET:
            value = _check_iterations("max_iterations", max_iterations)
            if value is None:
                raise ValueError("max_iterations must be a non-negative integer, got None")
            self.max_power_iterations = value

    def _run_budget(self, n_iterations: int | None, tol: float | None) -> None:
        if n_iterations is None and tol is None:
            return
        self.update_lipschitz(n_iterations, tol, self.max_power_iterations)

    def after_optimizer_step(self) -> None:
        """Training budget (``train_iterations`` / ``train_tol``), called by ``hooks.after_optimizer_step``."""
        self._run_budget(self.train_iterations, self.train_tol)

    def before_evaluation(self) -> None:
        """Evaluation budget (``eval_iterations`` / ``eval_tol``), called by ``hooks.before_evaluation``."""
        self._run_budget(self.eval_iterations, self.eval_tol)

    # ---- frozen copies ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def freeze_(self) -> LipschitzNormalizedLayer:
        """Make THIS module frozen: its weight becomes the normalised weight (used as-is), nothing requires grad.

        Meant for a deep copy (``frozen.frozen_copy``); the hooks do nothing on a frozen layer.
        """
        if not self.frozen:
            self.weight.copy_(self.normalized_weight())
            self.frozen = True
        for parameter in self.parameters(recurse=False):
            parameter.requires_grad_(False)
        return self

    @torch.no_grad()
    def refreeze_from_(self, source: LipschitzNormalizedLayer) -> None:
        """Frozen again at ``source``'s current normalised weight and bias (the layer frozen_copy(source) would be;
        used by ``frozen.FrozenMirror``). u, v are not copied: a frozen layer never uses them."""
        self.weight.copy_(source.normalized_weight())
        if self.bias is not None and source.bias is not None:
            self.bias.copy_(source.bias)
        self.frozen = True

    # ---- lazy buffers in state dicts ----------------------------------------------------------------------------
    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        for name in ("u", "v"):
            key = prefix + name
            if key in state_dict and getattr(self, name) is None:
                saved = state_dict[key]
                setattr(self, name, torch.empty(saved.shape, dtype=self.weight.dtype, device=self.weight.device))
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def _norm_repr(self) -> str:
        norms = (
            "" if (self.domain, self.codomain) == (2.0, 2.0) else f", domain={self.domain}, codomain={self.codomain}"
        )
        return f"coeff={self.coeff}{norms}{', frozen' if self.frozen else ''}"


def _default_init(weight: Tensor, bias: Tensor | None, fan_in: int, zero_init: bool) -> None:
    with torch.no_grad():
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))  # the nn.Linear / nn.Conv2d default
        if zero_init:
            weight.div_(1000.0)
        if bias is not None:
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            nn.init.uniform_(bias, -bound, bound)


class SpectralLinear(LipschitzNormalizedLayer):
    """y = W_used x + b with ‖W_used‖_{domain→codomain} ≤ coeff; any induced norm with p, q ∈ [1, ∞]."""

    has_dense_matrix = True

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        coeff: float = 0.97,
        bias: bool = True,
        domain: float = 2.0,
        codomain: float = 2.0,
        zero_init: bool = False,
    ) -> None:
        super().__init__(coeff=coeff, domain=domain, codomain=codomain)
        self.in_features = check_positive_int("in_features", in_features)
        self.out_features = check_positive_int("out_features", out_features)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        _default_init(self.weight, self.bias, in_features, zero_init)
        if not self.closed_form:
            self._initialize_vectors()

    def _apply_operator(self, v: Tensor, weight: Tensor) -> Tensor:
        return torch.mv(weight, v)

    def _apply_adjoint(self, u: Tensor, weight: Tensor) -> Tensor:
        return torch.mv(weight.t(), u)

    def _vector_sizes(self) -> tuple[int, int]:
        return self.out_features, self.in_features

    def _weight_matrix(self) -> Tensor:
        return self.weight

    def _layer(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.linear(x, weight, self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}, {self._norm_repr()}"


class SpectralConv2d(LipschitzNormalizedLayer):
    """2-D convolution with spectral norm ≤ coeff of the whole conv operator (padding, stride) at the input size.

    Only (domain, codomain) = (2, 2). For k×k kernels u ∈ R^{C_out·H'·W'}, v ∈ R^{C_in·H·W} are created at the
    first forward with ``INIT_ITERATIONS`` iterations (the size is kept in the buffer ``spatial_dims``, so a
    state dict round-trips into a fresh module); later inputs must have the same H, W. 1×1 kernels: the
    C_out×C_in matrix (its norm equals the operator norm for any padding, stride and input size).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        *,
        padding: int | tuple[int, int] = 0,
        stride: int | tuple[int, int] = 1,
        coeff: float = 0.97,
        bias: bool = True,
        domain: float = 2.0,
        codomain: float = 2.0,
        zero_init: bool = False,
    ) -> None:
        super().__init__(coeff=coeff, domain=domain, codomain=codomain)
        if (self.domain, self.codomain) != (2.0, 2.0):
            raise ValueError(
                f"SpectralConv2d supports only domain=2, codomain=2 (the spectral norm), got domain={domain}, "
                f"codomain={codomain}; use SpectralLinear for other induced norms"
            )
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.out_channels = check_positive_int("out_channels", out_channels)
        self.kernel_size = _pair("kernel_size", kernel_size, minimum=1)
        self.padding = _pair("padding", padding, minimum=0)
        self.stride = _pair("stride", stride, minimum=1)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        _default_init(self.weight, self.bias, in_channels * self.kernel_size[0] * self.kernel_size[1], zero_init)
        self.as_matrix = self.kernel_size == (1, 1)
        self.register_buffer("spatial_dims", torch.zeros(2, dtype=torch.long))
        self._spatial: tuple[int, int] | None = None
        if self.as_matrix:
            self._initialize_vectors()

    # ---- geometry --------------------------------------------------------------------------------------------------
    def _output_size(self, spatial: tuple[int, int]) -> tuple[int, int]:
        return tuple(  # type: ignore[return-value]
            (size + 2 * pad - k) // s + 1
            for size, pad, k, s in zip(spatial, self.padding, self.kernel_size, self.stride)
        )

    def _output_padding(self, spatial: tuple[int, int]) -> tuple[int, int]:
        out = self._output_size(spatial)
        return tuple(  # type: ignore[return-value]
            size - ((o - 1) * s - 2 * pad + k)
            for size, o, pad, k, s in zip(spatial, out, self.padding, self.kernel_size, self.stride)
        )

    def _vector_sizes(self) -> tuple[int, int]:
        if self.as_matrix:
            return self.out_channels, self.in_channels
        if self._spatial is None:
            raise RuntimeError("SpectralConv2d: the input size is unknown before the first forward")
        h_out, w_out = self._output_size(self._spatial)
        return self.out_channels * h_out * w_out, self.in_channels * self._spatial[0] * self._spatial[1]

    # ---- operator --------------------------------------------------------------------------------------------------
    def _apply_operator(self, v: Tensor, weight: Tensor) -> Tensor:
        if self.as_matrix:
            return torch.mv(weight.view(self.out_channels, self.in_channels), v)
        image = v.view(1, self.in_channels, *self._spatial)  # type: ignore[misc]
        return F.conv2d(image, weight, stride=self.stride, padding=self.padding).reshape(-1)

    def _apply_adjoint(self, u: Tensor, weight: Tensor) -> Tensor:
        if self.as_matrix:
            return torch.mv(weight.view(self.out_channels, self.in_channels).t(), u)
        spatial: tuple[int, int] = self._spatial  # type: ignore[assignment]
        image = u.view(1, self.out_channels, *self._output_size(spatial))
        return F.conv_transpose2d(
            image, weight, stride=self.stride, padding=self.padding, output_padding=self._output_padding(spatial)
        ).reshape(-1)

    def _layer(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.conv2d(x, weight, self.bias, stride=self.stride, padding=self.padding)

    def _prepare(self, x: Tensor) -> None:
        if self.as_matrix:
            return
        spatial = (int(x.shape[-2]), int(x.shape[-1]))
        if self._spatial is None:
            self._spatial = spatial
            try:
                self._initialize_vectors()  # random starts: raises inside vmap (randomness="error")
            except BaseException:
                self._spatial = None  # stay uninitialised, so that a later plain forward can start over
                raise
            self.spatial_dims = torch.tensor(spatial, dtype=torch.long, device=self.spatial_dims.device)
        elif spatial != self._spatial:
            raise ValueError(
                f"SpectralConv2d was normalised for inputs of size {self._spatial[0]}×{self._spatial[1]}, "
                f"got {spatial[0]}×{spatial[1]}; the conv operator norm depends on the input size"
            )

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        saved = state_dict.get(prefix + "spatial_dims")
        if saved is not None and not self.as_matrix and int(saved.min()) > 0:
            self._spatial = (int(saved[0]), int(saved[1]))

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, bias={self.bias is not None}, {self._norm_repr()}"
        )


def lipschitz_layers(module: nn.Module) -> list[LipschitzNormalizedLayer]:
    """Every Lipschitz-normalised layer inside ``module`` (itself included), in ``modules()`` order."""
    return [m for m in module.modules() if isinstance(m, LipschitzNormalizedLayer)]


def set_power_budgets(module: nn.Module, **budget: int | float | None) -> None:
    """``set_power_budget(**budget)`` on every Lipschitz-normalised layer of ``module``."""
    for layer in lipschitz_layers(module):
        layer.set_power_budget(**budget)  # type: ignore[arg-type]


__all__ = [
    "INF",
    "LipschitzNormalizedLayer",
    "SpectralConv2d",
    "SpectralLinear",
    "check_positive_int",
    "check_positive_number",
    "lipschitz_layers",
    "set_power_budgets",
]
