"""A normalizing flow: a transform x → z and a standard-normal base, log p(x) = log N(f(x); 0, I) + log|det J_f(x)|."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from .exact import can_switch_to_exact, exact_logdets
from .jacobian import brute_force_logdet
from .transform import LogdetKind, Transform, sum_except_batch

LikelihoodKind = Literal["exact", "unbiased", "bound", "biased", "joint"]
#: What a flow's ``log_prob`` is, from the strongest claim to the weakest: the exact log-likelihood; an unbiased
#: estimate of it (Russian-roulette log-det); a lower bound on it (ELBO / importance-weighted bound, in
#: expectation); an estimate with no such guarantee (truncated series); a density of another space (a joint density
#: of data and augmenting coordinates at fixed values), not a likelihood of the data at all.
LIKELIHOOD_KINDS: tuple[LikelihoodKind, ...] = ("exact", "unbiased", "bound", "biased", "joint")


def weakest_kind(kinds: Iterable[str]) -> LikelihoodKind:
    """The kind of a number built from parts of ``kinds``: the weakest claim among them (``exact`` for none)."""
    return max(kinds, key=LIKELIHOOD_KINDS.index, default="exact")  # type: ignore[return-value]


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """Σ_i (−½ log 2π − z_i²/2) over every dimension but the batch."""
    return sum_except_batch(-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi))


class Flow(nn.Module):
    """A shape-preserving ``Transform`` (data → latent) with a standard normal over the latent.

    ``shape`` is one sample's shape: ``(d,)`` for vectors or ``(c, h, w)`` for images. ``config`` is the
    resolved configuration the model was built from (kept for checkpoints and logging).
    """

    #: what ``log_prob`` is when every log-det is exact; flows that return a bound or a joint density declare it
    likelihood: ClassVar[LikelihoodKind] = "exact"

    def __init__(self, transform: Transform, shape: Sequence[int], *, name: str = "", config: Any = None) -> None:
        super().__init__()
        self.transform = transform
        self.shape = tuple(int(s) for s in shape)
        self.name = name
        self.config = config
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    @property
    def logdet_kind(self) -> LogdetKind:
        return self.transform.kind

    def likelihood_kind(self, *, exact: bool = False) -> LikelihoodKind:
        """What ``log_prob(x, exact=exact)`` returns in the current mode (train/eval): the flow's declared
        ``likelihood`` weakened by its log-det (``unbiased`` for Russian roulette, ``biased`` for a truncated series)
        unless ``exact`` switches every log-det to its exact value."""
        return weakest_kind((self.likelihood, "exact" if exact else self.logdet_kind))

    @property
    def importance_samples(self) -> tuple[int, ...]:
        """The importance samples K of every importance-weighted layer of ``log_prob`` in the current mode,
        outermost first (empty: not an importance-weighted estimate)."""
        return ()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x → (z, log|det ∂z/∂x|)."""
        self._check_shape(x)
        return self.transform(x)

    def inverse(self, z: Tensor) -> Tensor:
        """z → x."""
        self._check_shape(z)
        return self.transform.inverse(z)

    def log_prob(self, x: Tensor, *, exact: bool = False) -> Tensor:
        """log p(x) in nats, one value per sample.

        ``exact=True`` replaces a stochastic or truncated log-det by an exact one: each estimating block's own
        exact path where all have one (``nflab.flows.exact``), else the brute-force Jacobian of the whole flow
        (small D only). For transforms whose log-det is already exact the analytic value is returned.
        """
        if exact and self.logdet_kind != "exact" and can_switch_to_exact(self.transform):
            with exact_logdets(self.transform):
                z, logdet = self(x)
            return standard_normal_log_prob(z) + logdet
        z, logdet = self(x)
        if exact and self.logdet_kind != "exact":
            logdet = self.exact_logdet(x)
        return standard_normal_log_prob(z) + logdet

    def exact_logdet(self, x: Tensor) -> Tensor:
        """log|det ∂f/∂x| computed exactly, whatever the transform claims (see ``log_prob``)."""
        self._check_shape(x)
        if self.logdet_kind != "exact" and can_switch_to_exact(self.transform):
            with exact_logdets(self.transform):
                return self(x)[1]
        return brute_force_logdet(lambda v: self.transform(v)[0], x)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n samples x = f⁻¹(z), z ~ N(0, I)."""
        ref = self._anchor
        z = torch.randn((n, *self.shape), generator=generator, dtype=ref.dtype, device=ref.device)
        return self.transform.inverse(z)

    def _check_shape(self, x: Tensor) -> None:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"{self.name or 'flow'} expects samples of shape {self.shape}, got {tuple(x.shape[1:])}")

    def extra_repr(self) -> str:
        return f"name={self.name!r}, shape={self.shape}, logdet={self.logdet_kind}"
