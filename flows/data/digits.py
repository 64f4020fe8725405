"""scikit-learn's embedded 8×8 digits (1797 images, 17 grey levels 0..16) with a fixed 80/20 split.

Split: permutation from ``torch.Generator().manual_seed(0)``; the last round(0.2·N) indices are test.
"""

from __future__ import annotations

import torch
from torch import Tensor

TEST_FRACTION = 0.2


def read_digits(split: str) -> tuple[Tensor, Tensor]:
    """Return (images uint8 [N, 1, 8, 8] in 0..16, labels int64 [N]) for ``split`` in {train, test}."""
    from sklearn.datasets import load_digits  # lazy: only this reader needs scikit-learn

    bunch = load_digits()
    images = torch.as_tensor(bunch.images).round().to(torch.uint8).unsqueeze(1)
    labels = torch.as_tensor(bunch.target).to(torch.int64)
    n = images.shape[0]
    n_test = round(TEST_FRACTION * n)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    idx = perm[n - n_test :] if split == "test" else perm[: n - n_test]
    return images[idx].contiguous(), labels[idx].contiguous()
