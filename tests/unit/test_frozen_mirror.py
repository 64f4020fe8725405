"""FrozenMirror: the per-block frozen copy refreshed in place equals a fresh deep-copied frozen copy, always."""

from __future__ import annotations

import copy

import pytest
import torch

from nflab.flows import hooks
from nflab.flows.layers.dense import dense_net
from nflab.flows.layers.frozen import FrozenMirror, frozen_copy
from nflab.flows.layers.lipschitz_nets import lipschitz_mlp

pytestmark = pytest.mark.usefixtures("float64")


def _branches() -> list[torch.nn.Module]:
    return [
        dense_net(2, 2, depth=3, growth=8, activation="cpila", coeff=0.9, lip_coeff=0.98, conv=False),
        dense_net(2, 2, depth=2, growth=4, activation="clipswish", coeff=0.9, lip_coeff=0.98, conv=True),
        lipschitz_mlp(2, [16, 16], 2, activation="lipswish", coeff=0.9, zero_init_last=False),
    ]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_refreshed_mirror_equals_a_fresh_frozen_copy_after_training_steps(index: int) -> None:
    net = _branches()[index]
    x = torch.randn(5, 2, 4, 4) if index == 1 else torch.randn(5, 2)
    mirror = FrozenMirror()
    first = mirror.of(net, example_input=x)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(3):
        optimizer.zero_grad()
        net(x).square().sum().backward()
        optimizer.step()
        hooks.after_optimizer_step(net)  # power iterations, dense-concatenation schedule
        refreshed = mirror.of(net)
        assert refreshed is first  # refreshed in place, not rebuilt
        fresh = frozen_copy(net)
        assert torch.equal(refreshed(x), fresh(x))
        torch.testing.assert_close(refreshed(x), net(x), rtol=0, atol=1e-14)
        assert not any(p.requires_grad for p in refreshed.parameters())
    # the mirror is not part of the module: it never enters a state dict, and changing it leaves net alone
    assert all(not k.startswith("frozen") for k in net.state_dict())


def test_mirror_rebuilds_when_dtype_changes_and_a_deep_copy_gets_its_own() -> None:
    net = _branches()[0]
    x = torch.randn(4, 2)
    mirror = FrozenMirror()
    first = mirror.of(net, example_input=x)
    net.float()
    rebuilt = mirror.of(net)
    assert rebuilt is not first and next(rebuilt.parameters()).dtype == torch.float32
    assert torch.equal(rebuilt(x.float()), frozen_copy(net)(x.float()))
    assert copy.deepcopy(mirror).of(net) is not rebuilt
