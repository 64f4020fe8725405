"""Shape bookkeeping that keeps every transform shape-preserving: squeeze, flatten and fixed permutations.

``Squeezed(inner)`` = unsqueeze ∘ inner ∘ squeeze and ``Flattened(inner)`` = unflatten ∘ inner ∘ flatten,
so a whole multi-scale model maps x to a latent of x's own shape (log-det 0 for the reshapes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..transform import LogdetKind, Transform


def squeeze2d(x: Tensor) -> Tensor:
    """[N,C,H,W] → [N,4C,H/2,W/2]; output channel c·4 + 2i + j holds position (i, j) of each 2×2 patch."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(n, c * 4, h // 2, w // 2)


def unsqueeze2d(x: Tensor) -> Tensor:
    """Inverse of :func:`squeeze2d` (the same ordering as ``pixel_shuffle(x, 2)``)."""
    n, c4, h, w = x.shape
    c = c4 // 4
    x = x.reshape(n, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(n, c, h * 2, w * 2)


class Squeezed(Transform):
    """Apply ``inner`` to the squeezed image and unsqueeze the result (space-to-depth, Dinh et al. 2017)."""

    def __init__(self, inner: Transform) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z, logdet = self.inner(squeeze2d(x))
        return unsqueeze2d(z), logdet

    def inverse(self, z: Tensor) -> Tensor:
        return unsqueeze2d(self.inner.inverse(squeeze2d(z)))

    @property
    def kind(self) -> LogdetKind:
        return self.inner.kind


class Flattened(Transform):
    """Apply a vector transform ``inner`` to the flattened sample (NICE and MAF on images)."""

    def __init__(self, inner: Transform, shape: Sequence[int]) -> None:
        super().__init__()
        self.inner = inner
        self.shape = tuple(shape)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z, logdet = self.inner(x.reshape(x.shape[0], -1))
        return z.reshape(x.shape), logdet

    def inverse(self, z: Tensor) -> Tensor:
        return self.inner.inverse(z.reshape(z.shape[0], -1)).reshape(z.shape)

    @property
    def kind(self) -> LogdetKind:
        return self.inner.kind


class Permutation(Transform):
    """A fixed permutation of dimension 1 (e.g. reversal between MAF layers); log-det 0."""

    def __init__(self, perm: Tensor) -> None:
        super().__init__()
        self.register_buffer("perm", perm.long())
        self.register_buffer("inv_perm", torch.argsort(perm.long()))

    @classmethod
    def reverse(cls, n: int) -> Permutation:
        return cls(torch.arange(n - 1, -1, -1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x.index_select(1, self.perm), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        return z.index_select(1, self.inv_perm)
