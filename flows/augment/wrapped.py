"""A flow around another flow: the wrapper keeps the data's shape, the inner flow does the density work.

``WrappedFlow(inner, shape)`` is a :class:`Flow` whose transform slot holds the inner flow (so ``state_dict``
keys read ``transform.<inner keys>``); it reports the inner flow's log-det kind and whether it has an exact
likelihood, and delegates forward, inverse, exact log-det and sampling to it. Subclasses add what happens
between the data and the inner flow (dequantization noise, padding).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..flow import Flow, LikelihoodKind, weakest_kind
from ..transform import LogdetKind


def takes_generator(flow: Flow) -> bool:
    """Whether ``flow.log_prob`` accepts a ``generator`` keyword (stochastic likelihood estimates do)."""
    return "generator" in inspect.signature(flow.log_prob).parameters


def inner_log_prob(flow: Flow, x: Tensor, *, exact: bool, generator: torch.Generator | None, **kwargs: Any) -> Tensor:
    """``flow.log_prob(x, exact=...)``, passing ``generator`` on to flows that draw noise themselves."""
    if generator is not None and takes_generator(flow):
        kwargs["generator"] = generator
    return flow.log_prob(x, exact=exact, **kwargs)


class WrappedFlow(Flow):
    """Base of the augmentation wrappers: ``inner`` is the flow on the (possibly augmented) inner shape."""

    def __init__(self, inner: Flow, shape: Sequence[int], *, name: str = "", config: Any = None) -> None:
        super().__init__(inner, shape, name=name or inner.name, config=config)  # type: ignore[arg-type]

    @property
    def inner(self) -> Flow:
        return self.transform  # type: ignore[return-value]

    @property
    def logdet_kind(self) -> LogdetKind:
        return self.inner.logdet_kind

    @property
    def has_exact_log_prob(self) -> bool:
        """Whether ``log_prob(exact=True)`` is available (false when the inner flow is e.g. CIF)."""
        return bool(getattr(self.inner, "has_exact_log_prob", True))

    def likelihood_kind(self, *, exact: bool = False) -> LikelihoodKind:
        """The weaker of this wrapper's own ``likelihood`` (in the current mode) and the inner flow's kind."""
        return weakest_kind((self.likelihood, self.inner.likelihood_kind(exact=exact)))

    @property
    def importance_samples(self) -> tuple[int, ...]:
        return (*self.own_importance_samples(), *self.inner.importance_samples)

    def own_importance_samples(self) -> tuple[int, ...]:
        """This wrapper's importance samples in the current mode (none by default)."""
        return ()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The inner flow's data → latent map."""
        self._check_shape(x)
        return self.inner(x)

    def inverse(self, z: Tensor) -> Tensor:
        """The inner flow's latent → data map (z has the inner flow's latent shape)."""
        return self.inner.inverse(z)

    def exact_logdet(self, x: Tensor) -> Tensor:
        self._check_shape(x)
        return self.inner.exact_logdet(x)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        return self.inner.sample(n, generator=generator)
