"""E6: compositions of linear affine couplings on a fixed partition fit random linear maps better as K grows."""

from __future__ import annotations

import pytest
import torch

from nflab.flows.analysis.coupling_linear import fit_linear_map, linear_couplings, random_linear_map


def test_targets_have_positive_determinant_and_couplings_start_at_identity() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        assert torch.linalg.det(random_linear_map(5, gen)) > 0
    x = torch.randn(7, 6, dtype=torch.float64)
    assert torch.equal(linear_couplings(6, 3).double()(x)[0], x)
    with pytest.raises(ValueError, match="at least 1"):
        linear_couplings(6, 0)


def test_fit_error_decreases_with_the_number_of_couplings() -> None:
    torch.set_num_threads(1)
    target = random_linear_map(6, torch.Generator().manual_seed(3))
    test_x = torch.randn(512, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)

    def error(k: int) -> float:
        fit = fit_linear_map(
            target, k, steps=300, lr=2e-2, batch_size=128, generator=torch.Generator().manual_seed(5), test_x=test_x
        )
        return fit.error

    one, eight = error(1), error(8)
    assert one > 0.3  # one coupling leaves half the coordinates as they are
    assert eight < 0.1 * one
