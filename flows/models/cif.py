"""Continuously indexed flows (Cornish, Caterini, Deligiannidis & Doucet, ICML 2020) around any base family.

After every base bijection f_ℓ a conditional affine layer z = (x′ + t(u)) ⊙ e^{s(u)} is indexed by a latent
u_ℓ with q(u_ℓ | x′_ℓ) and p(u_ℓ | z_ℓ) diagonal Gaussians. One importance sample has
    log w = Σ_ℓ [log|det J_fℓ| + Σ s(u_ℓ) + log p(u_ℓ | z_ℓ) − log q(u_ℓ | x′_ℓ)] + log N(z_L; 0, I),
and ``log_prob`` returns logsumexp_K(log w) − log K (the IWAE bound; K = 1 is the ELBO): a lower bound, never
an exact likelihood. Insertion rule: a CIF layer follows every transform with learnable parameters in the base's
top-level ``Compose``, descending into nested plain ``Compose``s (a RealNVP scale, a Glow step), but not into
shape-changing containers (``Squeezed``, ``Flattened``, ``FactorOut``), which count as one bijection, so every
CIF layer acts at the data's own shape; u has ``u_dim`` coordinates (vectors) or ``u_dim`` channels per pixel
(images). Nets: tanh MLPs (vectors, 2-D reference widths (10, 10)) or 3×3 tanh conv stacks (images, (32, 32)).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..exact import estimating_leaves
from ..flow import Flow, LikelihoodKind, standard_normal_log_prob, weakest_kind
from ..layers.conditional_affine import ConditionalAffine, conditioner_net
from ..layers.gaussian_conditional import DiagonalGaussianConditional
from ..registry import build_transform, register
from ..transform import Compose, LogdetKind, Transform, combine_kinds
from .common import Search, option

VECTOR_HIDDEN = (10, 10)
IMAGE_HIDDEN = (32, 32)
VECTOR_IMPORTANCE_SAMPLES = 100
IMAGE_IMPORTANCE_SAMPLES = 10


class NoExactLikelihoodError(ValueError):
    """Raised for ``exact=True`` on a model whose likelihood has no closed form (CIF)."""


@dataclass
class CIFConfig:
    base: str | None = option(None, "the wrapped family (null: resflow, the reference's 2-D base)")
    u_dim: int = option(
        1, "size of each index u: coordinates (vectors) or channels per pixel (images)", ge=1, le=4096,
        search=Search(1, 4), spaces=("architecture",),
    )  # fmt: skip
    cif_hidden: tuple[int, ...] = option(
        VECTOR_HIDDEN, "hidden widths of the s/t, p(u|z) and q(u|x') nets (images: (32, 32))", ge=1, le=65536
    )
    num_importance_samples: int = option(
        VECTOR_IMPORTANCE_SAMPLES, "K of log_prob in eval mode (images: 10)", ge=1, le=100_000
    )
    train_importance_samples: int = option(1, "K of log_prob in training mode (1: the ELBO)", ge=1, le=10_000)


class ContinuouslyIndexedAffine(Transform):
    """One CIF layer x′ → z with u ~ q(u | x′); its "log-det" is the one-sample term Σ s(u) + log p(u|z) − log q(u|x′).

    ``inverse`` is stochastic: u ~ p(u | z), x′ = z ⊙ e^{−s(u)} − t(u). Noise comes from ``self.generator``
    (set by :meth:`CIFFlow.noise`) or torch's default generator.
    """

    logdet_kind = "biased"

    def __init__(self, shape: Sequence[int], u_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        shape = tuple(int(s) for s in shape)
        u_shape = (u_dim,) if len(shape) == 1 else (u_dim, *shape[1:])
        self.affine = ConditionalAffine(conditioner_net(u_shape, hidden, 2 * shape[0]))
        self.posterior = DiagonalGaussianConditional(conditioner_net(shape, hidden, 2 * u_dim), u_shape)
        self.prior = DiagonalGaussianConditional(conditioner_net(shape, hidden, 2 * u_dim), u_shape)
        self.generator: torch.Generator | None = None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        u, log_q = self.posterior.rsample(x, generator=self.generator)
        z, logdet = self.affine(x, u)
        return z, logdet + self.prior.log_prob(u, z) - log_q

    def inverse(self, z: Tensor) -> Tensor:
        u, _ = self.prior.rsample(z, generator=self.generator)
        return self.affine.inverse(z, u)[0]


def _learned(transform: Transform) -> bool:
    return any(p.requires_grad for p in transform.parameters())


def interleave(transform: Transform, make_layer: Callable[[], Transform]) -> Compose:
    """The base transform with ``make_layer()`` after every learned transform (the rule of the module docstring)."""
    items = list(transform.transforms) if type(transform) is Compose else [transform]
    out: list[Transform] = []
    for item in items:
        if type(item) is Compose:
            out.append(interleave(item, make_layer))
            continue
        out.append(item)
        if _learned(item):
            out.append(make_layer())
    return Compose(*out)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"cif.{name}: {value!r} is not a positive integer")
    return value


class CIFFlow(Flow):
    """A Flow whose transform holds CIF layers; ``log_prob`` is the importance-weighted bound (a lower bound).

    ``forward(x)`` returns (z, log w − log N(z)) for one importance sample, so that log N(z) + second = log w as
    for every Flow; ``inverse`` and ``sample`` draw u from p(u | z) (stochastic). Every method that draws noise
    takes ``generator``.
    """

    has_exact_log_prob = False
    likelihood = "bound"

    def __init__(
        self,
        transform: Transform,
        shape: Sequence[int],
        *,
        num_importance_samples: int,
        train_importance_samples: int = 1,
        name: str = "cif",
        config: Any = None,
    ) -> None:
        super().__init__(transform, shape, name=name, config=config)
        self.num_importance_samples = _positive_int("num_importance_samples", num_importance_samples)
        self.train_importance_samples = _positive_int("train_importance_samples", train_importance_samples)

    def _base_estimators(self) -> list[Transform]:
        return [m for m in estimating_leaves(self.transform) if not isinstance(m, ContinuouslyIndexedAffine)]

    @property
    def logdet_kind(self) -> LogdetKind:
        """The kind of the base's log-dets (the CIF layers' terms are importance weights, declared by
        ``likelihood``, not log-dets)."""
        return combine_kinds(m.kind for m in self._base_estimators())

    def likelihood_kind(self, *, exact: bool = False) -> LikelihoodKind:
        """A bound, weakened by the base's estimated log-dets; ``exact``: evaluated under
        ``nflab.flows.exact.exact_logdets``, which switches the base's blocks that have an exact path."""
        kinds = ["exact" if exact and hasattr(m, "exact_override") else m.kind for m in self._base_estimators()]
        return weakest_kind((self.likelihood, *kinds))

    @property
    def importance_samples(self) -> tuple[int, ...]:
        return (self.train_importance_samples if self.training else self.num_importance_samples,)

    @contextmanager
    def noise(self, generator: torch.Generator | None) -> Iterator[None]:
        """Within the block every CIF layer draws its noise from ``generator``."""
        layers = [m for m in self.modules() if isinstance(m, ContinuouslyIndexedAffine)]
        previous = [m.generator for m in layers]
        for m in layers:
            m.generator = generator
        try:
            yield
        finally:
            for m, g in zip(layers, previous):
                m.generator = g

    def forward(self, x: Tensor, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        with self.noise(generator):
            return super().forward(x)

    def inverse(self, z: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        with self.noise(generator):
            return super().inverse(z)

    def log_prob(
        self,
        x: Tensor,
        *,
        exact: bool = False,
        num_importance_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """logsumexp_K(log w_k) − log K; K defaults to the eval or training budget of the current mode."""
        if exact:
            raise self._no_exact_likelihood()
        if num_importance_samples is None:
            k = self.train_importance_samples if self.training else self.num_importance_samples
        else:
            k = _positive_int("num_importance_samples", num_importance_samples)
        z, logdet = self(x.repeat_interleave(k, dim=0), generator=generator)
        log_w = (standard_normal_log_prob(z) + logdet).view(x.shape[0], k)
        return torch.logsumexp(log_w, dim=1) - math.log(k)

    def exact_logdet(self, x: Tensor) -> Tensor:
        raise self._no_exact_likelihood()

    def _no_exact_likelihood(self) -> NoExactLikelihoodError:
        return NoExactLikelihoodError(
            f"{self.name}: exact=True is not available: CIF's density is a continuous mixture over u with no "
            "closed form; log_prob returns its importance-weighted lower bound (num_importance_samples=K)"
        )

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """z ~ N(0, I); from the top, u ~ p(u | z), x′ = z ⊙ e^{−s(u)} − t(u), x = f⁻¹(x′)."""
        with self.noise(generator):
            return super().sample(n, generator=generator)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, importance_samples(eval={self.num_importance_samples}, "
            f"train={self.train_importance_samples})"
        )


@register(
    "cif",
    CIFConfig,
    presets={
        "images": {"cif_hidden": IMAGE_HIDDEN, "num_importance_samples": IMAGE_IMPORTANCE_SAMPLES},
        "small": {"cif_hidden": VECTOR_HIDDEN},
    },
    by_data={"images": "images"},
    summary="continuously indexed flow around a base family (a lower bound on log p)",
    wraps_base=True,
    default_base="resflow",
)
def build_cif(shape: tuple[int, ...], cfg: Any) -> CIFFlow:
    base = build_transform(cfg.base, shape, cfg)
    transform = interleave(base, lambda: ContinuouslyIndexedAffine(shape, cfg.u_dim, cfg.cif_hidden))
    if not any(isinstance(t, ContinuouslyIndexedAffine) for t in transform.modules()):
        raise ValueError(f"cif.base: {cfg.base!r} has no learned transform at the data shape to index")
    return CIFFlow(
        transform,
        shape,
        num_importance_samples=cfg.num_importance_samples,
        train_importance_samples=cfg.train_importance_samples,
        name="cif",
        config=cfg,
    )
