"""What a flow's log_prob is (exact, unbiased, bound, biased, joint) is declared by the flow, in the current mode."""

from __future__ import annotations

import pytest
import torch

import nflab.flows as F
from nflab.flows.flow import LIKELIHOOD_KINDS, weakest_kind


def test_weakest_kind_orders_the_claims() -> None:
    assert LIKELIHOOD_KINDS == ("exact", "unbiased", "bound", "biased", "joint")
    assert weakest_kind([]) == "exact"
    assert weakest_kind(["exact", "unbiased"]) == "unbiased"
    assert weakest_kind(["unbiased", "bound"]) == "bound"
    assert weakest_kind(["bound", "biased", "exact"]) == "biased"
    assert weakest_kind(["joint", "exact"]) == "joint"


@pytest.mark.parametrize(
    ("family", "opts", "estimated", "exact"),
    [
        ("realnvp", {"preset": "small"}, "exact", "exact"),
        ("resflow", {"preset": "small"}, "unbiased", "exact"),
        ("iresnet", {"preset": "small"}, "biased", "exact"),
        ("cif", {"base": "realnvp", "preset": "small"}, "bound", "bound"),
        ("cif", {"base": "resflow", "preset": "small"}, "bound", "bound"),
        ("cif", {"base": "iresnet", "preset": "small"}, "biased", "bound"),
        ("realnvp", {"preset": "small", "padding": 2, "padding_kind": "gaussian"}, "bound", "bound"),
        ("realnvp", {"preset": "small", "padding": 2, "padding_kind": "zero"}, "bound", "bound"),
    ],
)
def test_families_declare_their_evaluation_kind(family: str, opts: dict, estimated: str, exact: str) -> None:
    flow = F.build(family, (2,), **opts).eval()
    assert flow.likelihood_kind() == estimated
    assert flow.likelihood_kind(exact=True) == exact


def test_importance_samples_follow_the_mode() -> None:
    cif = F.build("cif", (2,), base="realnvp", preset="small")
    assert cif.train().importance_samples == (1,) and cif.eval().importance_samples == (100,)
    padded = F.build("realnvp", (2,), preset="small", padding=1, padding_kind="zero", padding_samples=7)
    assert padded.train().likelihood_kind() == "joint" and padded.importance_samples == ()
    assert padded.eval().importance_samples == (7,)
    plain = F.build("realnvp", (2,), preset="small")
    assert plain.importance_samples == ()
    digits = F.build("realnvp", (1, 8, 8), preset="small", dequantization="variational", dequantization_bins=17)
    assert digits.eval().likelihood_kind() == "bound" and digits.importance_samples == (1,)
    assert torch.isfinite(digits.log_prob(torch.rand(2, 1, 8, 8))).all()


def test_preset_of_names_the_size_class_of_a_resolved_config() -> None:
    import dataclasses

    from nflab.flows.registry import preset_of

    def resolved(name: str, **options: object) -> dict:
        return {"family": name, **dataclasses.asdict(F.resolve_config(name, **options))}

    assert preset_of("realnvp", resolved("realnvp", preset="small")) == "small"
    assert preset_of("realnvp", resolved("realnvp")) == "default"
    assert preset_of("realnvp", resolved("realnvp", preset="small", couplings=8)) == "custom"
    assert preset_of("resflow", resolved("resflow", preset="small", coeff=0.9)) == "small"  # not a size option
    assert preset_of("cif", resolved("cif", base="resflow", preset="small")) == "small"
    assert preset_of("cif", resolved("cif", base="resflow", blocks=(10,), hidden=(128,) * 4)) == "custom"
