"""The one configuration language: every option is declared once and everything else is derived from it.

Property tests (hypothesis) draw option sets from the declarations of every family: valid ones round-trip through
YAML → the resolved run spec → ``build``; invalid ones (a value outside its declared range or of the wrong type) are
one line naming the YAML path, the value and what is allowed. Plus the bad inputs that used to get through.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any, Literal

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nflab.flows as F
from nflab.flows.options import OptionSpec, check_value
from nflab.flows.registry import json_schema
from nflab.pipelines import PipelineError, expand, load_pipeline_text
from nflab.pipelines.loader import CampaignTooLarge

# options whose valid values still depend on another option (checked across options by the family)
CROSS = {("ffjord", "solver"), ("ffjord", "step_size"), ("ffjord", "estimator")}
SIZES = {"blocks", "hidden", "couplings", "layers", "depth", "levels", "dense_growth", "fc_dense_growth", "width",
         "channels", "cif_hidden", "dense_depth", "res_blocks", "scales", "fc_blocks", "fc_hidden"}  # fmt: skip


def _bound(spec: OptionSpec, key: str) -> float | None:
    return dict(spec.bounds).get(key)


def _numbers(spec: OptionSpec, kind: type) -> st.SearchStrategy[Any]:
    lo = _bound(spec, "ge") if _bound(spec, "ge") is not None else _bound(spec, "gt")
    hi = _bound(spec, "le") if _bound(spec, "le") is not None else _bound(spec, "lt")
    if kind is int:
        low = int(lo or 0) + (1 if _bound(spec, "gt") is not None else 0)
        top = low + (2 if spec.name in SIZES else 8)  # small models: the property is about the options, not size
        return st.integers(low, top if hi is None else min(int(hi), top))
    if spec.search is not None and spec.search.low is not None:
        lo, hi = spec.search.low, spec.search.high
    low = lo if lo is not None else -10.0
    high = hi if hi is not None else low + 10.0
    return st.floats(low, high, exclude_min=_bound(spec, "gt") is not None, exclude_max=_bound(spec, "lt") is not None)


def valid_values(spec: OptionSpec, annotation: Any = None) -> st.SearchStrategy[Any]:
    annotation = spec.annotation if annotation is None else annotation
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return st.sampled_from(typing.get_args(annotation))
    if origin in (types.UnionType, typing.Union):
        return st.one_of([valid_values(spec, a) for a in typing.get_args(annotation) if a is not type(None)])
    if origin is tuple:
        return st.lists(_numbers(spec, typing.get_args(annotation)[0]), min_size=1, max_size=2)
    if annotation is bool:
        return st.booleans()
    if annotation is str:  # CIF's base
        return st.sampled_from([f for f in F.registry.base_families() if f not in ("ffjord", "maf")])
    return _numbers(spec, annotation)


def tunable_vector_options(family: str) -> dict[str, OptionSpec]:
    return {
        k: s
        for k, s in F.options(family).items()
        if k != "preset" and s.applies != "images" and (family, k) not in CROSS and not k.startswith(("padding", "deq"))
    }


def pipeline(family: str, options: dict[str, Any], dataset: str = "moons") -> str:
    model = {"family": family, "preset": "small", **options}
    return yaml.safe_dump({"name": "prop", "dataset": {"name": dataset}, "model": model, "train": {"steps": 1}})


@st.composite
def option_sets(draw: st.DrawFn, family: str) -> dict[str, Any]:
    specs = tunable_vector_options(family)
    names = draw(st.lists(st.sampled_from(sorted(specs)), min_size=1, max_size=4, unique=True))
    drawn = {name: draw(valid_values(specs[name])) for name in names}
    for name in ("dense_growth", "fc_dense_growth"):  # even: CLipSwish and CPila split it (a cross-option rule)
        if name in drawn:
            drawn[name] *= 2
    return drawn


FAMILIES = [f for f in F.available() if f != "cif"] + ["cif"]


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_valid_option_sets_round_trip_yaml_spec_and_build(family: str, data: st.DataObject) -> None:
    options = data.draw(option_sets(family))
    if family == "ffjord" and options.get("estimator") == "exact":
        options.pop("estimator")
    if options.get("activation") in ("cpila", "clipswish") and family in ("monotone", "idensenet"):
        pass  # doubled channels: fine at the small preset
    try:
        (run,) = expand(load_pipeline_text(pipeline(family, options), "prop.yaml"))
    except PipelineError as exc:
        pytest.fail(f"valid options refused: {options}: {exc}")
    model = run.config["model"]
    for key, value in options.items():
        expected = list(value) if isinstance(value, tuple) else value
        assert model[key] == pytest.approx(expected) if isinstance(value, float) else model[key] == expected
    assert json.loads(json.dumps(run.config)) == run.config  # the spec is plain JSON
    flow = F.build(family, (2,), **{k: v for k, v in model.items() if k != "family"})
    assert flow.config is not None


@st.composite
def bad_option(draw: st.DrawFn, family: str) -> tuple[str, Any]:
    specs = {k: s for k, s in tunable_vector_options(family).items() if s.bounds or typing.get_origin(s.annotation)}
    name = draw(st.sampled_from(sorted(specs)))
    spec = specs[name]
    bounds = dict(spec.bounds)
    candidates: list[Any] = ["not-a-value", [], {"a": 1}]
    if "ge" in bounds:
        candidates.append(bounds["ge"] - 1)
    if "gt" in bounds:
        candidates.append(bounds["gt"])
    if "le" in bounds:
        candidates.append(bounds["le"] * 2 + 1)
    if "lt" in bounds:
        candidates.append(bounds["lt"])
    value = draw(st.sampled_from(candidates))
    try:
        check_value((name,), spec.annotation, value, spec.bounds)
    except F.ConfigError:
        return name, value
    return name, "not-a-value"  # (a candidate that happens to be valid for this type)


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_invalid_options_are_one_line_naming_path_value_and_allowed(family: str, data: st.DataObject) -> None:
    name, value = data.draw(bad_option(family))
    with pytest.raises(PipelineError) as info:
        load_pipeline_text(pipeline(family, {name: value}), "prop.yaml")
    message = str(info.value)
    assert "\n" not in message and message.startswith("prop.yaml:")
    assert f"model.{name}" in message and " is not " in message
    spec = F.options(family)[name]
    assert spec.allowed in message or "one of" in message


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ("model: {family: realnvp, hidden: [-1]}", "model.hidden[0]: -1 is not an integer >= 1 and <= 65536"),
        ("train: {steps: 1.0e+30}", "train.steps: 1e+30 is not an integer"),
        ("train: {steps: 1000000000000000000000000000000}", "train.steps: 1000000000000000000000000000000 is out of"),
        ("train: {batch_size: 1.0e+12}", "train.batch_size: 1000000000000.0 is not an integer"),
        ("train: {batch_size: 1000000000000}", "train.batch_size: 1000000000000 is out of range: must be > 0 and <="),
        ("model: {family: resflow, dense_growth: 8}", "model.dense_growth: 'dense_growth' is not an option of resflow"),
        ("model: {family: monotone, coeff: 1.5}", "model.coeff: 1.5 is not a number > 0 and < 1"),
        ("model: {family: monotone, cpila_k: 0}", "model.cpila_k: 0 is not a number > 0"),
        ("estimator: {kind: roulette}", "estimator.kind: applies to no run of the campaign"),
        (
            "model: {family: ffjord}\nestimator: {kind: roulette}",
            "estimator.kind: 'roulette' is not one of: exact, hut",
        ),
    ],
)
def test_bad_inputs_that_used_to_get_through(change: str, fragment: str) -> None:
    base = {"name": "bad", "dataset": {"name": "moons"}, "model": {"family": "realnvp"}}
    base.update(yaml.safe_load(change))
    with pytest.raises(PipelineError) as info:
        load_pipeline_text(yaml.safe_dump(base), "bad.yaml")
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_a_huge_campaign_is_counted_not_expanded() -> None:
    text = "name: huge\ndataset: {name: moons}\nmodel: {family: realnvp}\nrepeats: 1000000\n"
    with pytest.raises(CampaignTooLarge) as info:
        load_pipeline_text(text, "huge.yaml", max_runs=10_000)
    assert info.value.planned == 1_000_000 and "more than the limit of 10,000" in str(info.value)
    matrix = "matrix:\n  train.seed: [" + ", ".join(str(i) for i in range(1200)) + "]\n  train.lr: ["
    matrix += ", ".join(f"{0.001 + i * 1e-6}" for i in range(1000)) + "]\n"
    with pytest.raises(CampaignTooLarge) as info:  # 1.2 million points: refused at once
        load_pipeline_text(text.replace("repeats: 1000000\n", "") + matrix, "huge.yaml", max_runs=10_000)
    assert info.value.planned == 1_200_000


def test_options_are_declared_once_and_presets_are_complete_per_kind_of_data() -> None:
    for family in F.available():
        schema = json_schema(family)
        assert schema["additionalProperties"] is False and "family" in schema["properties"]
        for kind in ("vectors", "images"):
            cfg = F.registry.defaults(family, kind)
            assert all(v is not None for k, v in cfg.items() if k not in NULLABLE), (family, kind)
    # the published models by kind of data: toy Monotone Flow, CIFAR-10 Monotone Flow
    toy, images = F.registry.defaults("monotone", "vectors"), F.registry.defaults("monotone", "images")
    assert (toy["blocks"], toy["coeff"], toy["estimator"], toy["dense_growth"]) == ((10,), 0.9, "exact", 16)
    assert (images["blocks"], images["coeff"], images["estimator"], images["dense_growth"]) == (
        (16, 16, 16), 0.98, "roulette", 172
    )  # fmt: skip
    assert images["n_exact_terms"] == 10 and images["dist"] == "poisson" and images["memory_efficient"] is True
    # a family lists only the options it uses
    assert "dense_growth" not in F.options("resflow") and "hidden" not in F.options("monotone")
    assert F.registry.family("monotone").tf32_off and not F.registry.family("resflow").tf32_off


NULLABLE = {"power_iterations", "power_tol", "scales", "step_size", "base", "padding_std", "padding_samples"}


def test_tunable_options_carry_their_search_range_and_space() -> None:
    specs = F.options("monotone")
    lipschitz = {k for k, s in specs.items() if "lipschitz" in s.spaces}
    assert {"coeff", "power_iterations", "lip_coeff"} <= lipschitz
    assert {k for k, s in specs.items() if "activation" in s.spaces} >= {"cpila_k", "cpila_shift", "activation"}
    assert specs["cpila_k"].search.low == 1.0 and specs["cpila_k"].search.high == 10.0
    for family in F.available():
        for spec in F.options(family).values():
            if spec.search is not None and spec.search.low is not None:  # the range is inside the declared bounds
                check_value((spec.name,), spec.annotation, type(spec.default or 0)(spec.search.low), spec.bounds)
                check_value((spec.name,), spec.annotation, type(spec.default or 0)(spec.search.high), spec.bounds)


@pytest.mark.parametrize("family", ["realnvp", "resflow", "ffjord", "maf"])
def test_image_flows_refuse_data_outside_the_unit_interval_in_one_line(family: str) -> None:
    import torch

    flow = F.build(family, (1, 4, 4), preset="small").double() if family != "maf" else F.build(family, (1, 4, 4))
    flow = flow.double()
    with pytest.raises(ValueError) as info:
        flow.log_prob(torch.randn(3, 1, 4, 4, dtype=torch.float64) * 3)
    message = str(info.value)
    assert "outside [0, 1)" in message and "\n" not in message
    inside = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    assert torch.isfinite(flow.log_prob(inside)).all()
