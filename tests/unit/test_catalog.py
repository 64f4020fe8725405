"""The catalog pipelines load, expand and follow the published protocols."""

from __future__ import annotations

import pytest

from nflab.flows.analysis.fit1d import FIT1D_VARIANTS
from nflab.flows.data import ONED_TARGETS
from nflab.pipelines import (
    PipelineError,
    catalog_path,
    expand,
    list_catalog,
    load_pipeline,
    load_pipeline_text,
    pipeline_path,
)
from nflab.pipelines.hashing import config_hash

EXPECTED = {
    "e2-toy",
    "e2-toy-quick",
    "digits",
    "digits-quick",
    "e1-fit1d",
    "e2-monotone",
    "e2-monotone-quick",
    "e4-estimators",
    "tune-monotone-toy",
    "tune-resflow-digits",
    *(f"e3-{d}{q}" for d in ("mnist", "cifar10", "imagenet32", "imagenet64") for q in ("", "-quick")),
    "e6-coupling-linear",
    "e6-coupling-linear-quick",
    "ffjord-glow-toy",
    "ffjord-glow-toy-quick",
}
# one seed: the E3 image pipelines (the papers report one run of days of GPU time) and the CPU-minutes variants
ONE_SEED = {n for n in EXPECTED if n.startswith("e3-")} | {"e6-coupling-linear-quick", "ffjord-glow-toy-quick"}
TABLE_1_SETS = {"2spirals", "8gaussians", "checkerboard", "circles", "moons", "pinwheel", "rings", "swissroll"}


def test_catalog_lists_the_seed_experiments() -> None:
    assert set(list_catalog()) >= EXPECTED
    assert catalog_path("e2-toy").name == "e2-toy.yaml"
    assert catalog_path("e2-toy.yaml") == catalog_path("e2-toy")
    with pytest.raises(ValueError, match="no catalog pipeline 'nope'"):
        catalog_path("nope")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_catalog_file_loads_and_expands(name: str) -> None:
    pipeline = load_pipeline(catalog_path(name))
    assert pipeline.name == name
    specs = expand(pipeline)
    assert specs
    assert len({s.run_key for s in specs}) == len(specs)


SEEDED = {n for n in EXPECTED if not n.startswith("tune-") and n not in ONE_SEED}
COMPARISONS = sorted(SEEDED | {"cif-toy", "cif-toy-quick", "e7-padding"})


@pytest.mark.parametrize("name", COMPARISONS)
def test_every_catalog_comparison_runs_three_paired_seeds(name: str) -> None:
    """≥ 3 seeds per configuration, and the same seeds for every configuration (one data stream per seed)."""
    specs = expand(load_pipeline(catalog_path(name)))
    seeds: dict[str, set[int]] = {}
    for spec in specs:
        seeds.setdefault(spec.config_hash, set()).add(spec.seed)
    assert all(len(s) >= 3 for s in seeds.values())
    assert len({frozenset(s) for s in seeds.values()}) == 1


def test_catalog_name_loads_without_a_path() -> None:
    assert load_pipeline("e2-toy-quick").name == "e2-toy-quick"
    assert pipeline_path("e2-toy-quick") == catalog_path("e2-toy-quick")


def test_e2_toy_follows_the_paper_protocol() -> None:
    specs = expand(load_pipeline(catalog_path("e2-toy")))
    assert len(specs) == 8 * 4 * 3
    assert {s.config["dataset"]["name"] for s in specs} == TABLE_1_SETS
    assert {s.config["model"]["family"] for s in specs} == {"nice", "realnvp", "glow", "maf"}
    for spec in specs:
        cfg = spec.config
        assert cfg["train"]["steps"] == 50000
        assert cfg["train"]["eval_every"] == 100
        assert cfg["train"]["batch_size"] == 500
        assert cfg["train"]["lr"] == pytest.approx(1e-3)
        assert cfg["train"]["optimizer"] == "adam"
        assert cfg["dataset"]["test_samples"] == 10000
        assert cfg["eval"]["exact"] is True
        assert cfg["eval"]["best_metric"] == "nats" and cfg["eval"]["average_last"] == 20
        assert cfg["dataset"]["validation_samples"] == 10000
        assert "estimator" not in cfg  # coupling flows: no estimated log-det, the section would do nothing
    realnvp = next(s for s in specs if s.config["model"]["family"] == "realnvp")
    assert realnvp.config["model"]["couplings"] == 8
    assert realnvp.config["model"]["hidden"] == [128, 128]


def test_e2_toy_quick_is_small() -> None:
    specs = expand(load_pipeline(catalog_path("e2-toy-quick")))
    assert len(specs) == 3 * 4 * 3
    assert {s.config["dataset"]["name"] for s in specs} == {"8gaussians", "checkerboard", "moons"}
    assert {s.config["model"]["family"] for s in specs} == {"nice", "realnvp", "maf", "glow"}
    for spec in specs:
        assert spec.config["train"]["steps"] <= 2500
        assert spec.config["train"]["batch_size"] == 256
        assert spec.config["train"]["eval_every"] == 200
        assert spec.config["dataset"]["test_samples"] == 2000
        assert max(spec.config["model"]["hidden"]) <= 64


def test_digits_pipelines() -> None:
    full = expand(load_pipeline(catalog_path("digits")))
    quick = expand(load_pipeline(catalog_path("digits-quick")))
    for specs, steps in ((full, 20000), (quick, 300)):
        assert [s.config["model"]["family"] for s in specs] == ["realnvp"] * 3 + ["glow"] * 3
        for spec in specs:
            assert spec.config["dataset"] == {
                "name": "digits",
                "test_samples": 10000,
                "validation_samples": None,  # 10 % of the training images
                "train_subset": None,
                "n_bins": 17,
            }
            assert spec.config["eval"]["average_last"] == 0
            assert spec.config["train"]["steps"] == steps
            assert spec.config["train"]["batch_size"] == 64
            assert spec.config["eval"]["best_metric"] == "bpd"
    assert full[3].config["model"]["depth"] == 32  # Glow's published K
    assert quick[3].config["model"]["depth"] == 4  # Glow's small preset
    assert all(s.config["train"]["eval_every"] == 100 for s in quick)


def test_e2_monotone_follows_the_paper_protocol() -> None:
    specs = expand(load_pipeline(catalog_path("e2-monotone")))
    assert len(specs) == 8 * 2 * 3
    assert {s.config["dataset"]["name"] for s in specs} == TABLE_1_SETS
    for spec in specs:
        cfg = spec.config
        assert "analysis" not in cfg
        assert cfg["train"]["steps"] == 50000
        assert cfg["train"]["batch_size"] == 500
        assert cfg["train"]["eval_every"] == 100
        assert cfg["train"]["lr"] == pytest.approx(1e-3)
        assert cfg["train"]["weight_decay"] == pytest.approx(1e-5)
        assert cfg["train"]["betas"] == [0.9, 0.999]
        assert cfg["dataset"]["test_samples"] == 10000
        assert cfg["model"]["estimator"] == "exact"  # the paper's --brute-force True (the section, merged)
        assert cfg["eval"]["exact"] is True and cfg["eval"]["best_metric"] == "nats"
    models = {s.config["model"]["family"]: s.config["model"] for s in specs}
    assert set(models) == {"idensenet", "monotone"}
    for family, activation in (("monotone", "cpila"), ("idensenet", "clipswish")):  # the families' toy defaults
        model = models[family]
        assert model["activation"] == activation
        assert model["blocks"] == [10] and model["dense_depth"] == 3 and model["learnable_concat"] is True


def test_e2_monotone_quick_is_small() -> None:
    specs = expand(load_pipeline(catalog_path("e2-monotone-quick")))
    assert len(specs) == 3 * 2 * 3
    assert {s.config["model"]["family"] for s in specs} == {"idensenet", "monotone"}
    for spec in specs:
        cfg = spec.config
        assert cfg["train"]["steps"] <= 2000 and cfg["train"]["batch_size"] <= 256
        assert cfg["model"]["blocks"] == [4] and cfg["model"]["dense_growth"] == 8
        assert cfg["model"]["estimator"] == "exact" and cfg["dataset"]["test_samples"] <= 2000


def test_e4_estimators_pipeline() -> None:
    specs = expand(load_pipeline(catalog_path("e4-estimators")))
    assert [s.config["model"]["family"] for s in specs] == ["iresnet"] * 3 + ["resflow"] * 3 + ["monotone"] * 3
    for spec in specs:
        cfg = spec.config
        assert cfg["analysis"] == {
            "kind": "estimator_bias",
            "terms": list(range(1, 21)),
            "repeats": 100,
            "points": 256,
        }
        assert cfg["dataset"]["name"] == "checkerboard" and cfg["train"]["steps"] <= 5000
        assert cfg["model"]["blocks"] == [4]  # small presets: a few minutes on CPU
        published = {"iresnet": "truncated", "resflow": "roulette", "monotone": "exact"}
        assert cfg["model"]["estimator"] == published[cfg["model"]["family"]]  # each family's published estimator


def test_e1_fit1d_pipeline() -> None:
    specs = expand(load_pipeline(catalog_path("e1-fit1d")))
    assert len(specs) == len(ONED_TARGETS) * len(FIT1D_VARIANTS) * 3
    pairs = {(s.config["fit1d"]["target"], s.config["fit1d"]["variant"]) for s in specs}
    assert pairs == {(t, v) for t in ONED_TARGETS for v in FIT1D_VARIANTS}
    for spec in specs:
        fit1d = spec.config["fit1d"]
        assert spec.config["kind"] == "fit1d" and fit1d["branch"] == "dense" and fit1d["activation"] == "cpila"
        assert set(fit1d) == {
            "target", "variant", "branch", "activation", "coeff", "grid", "dense_depth", "dense_growth", "lip_coeff",
        }  # fmt: skip
        assert spec.config["train"]["steps"] <= 5000 and spec.config["train"]["dtype"] == "float64"
        assert set(spec.config) == {"kind", "fit1d", "train", "resources"}  # a run kind of its own: no placeholders


def test_fit1d_is_a_run_kind_without_density_sections() -> None:
    """A regression has no density: no dataset, model or eval, and giving one is an error (it would be ignored)."""
    bare = "name: fit\nfit1d: {variant: residual}\n"
    [alone] = expand(load_pipeline_text(bare))
    assert alone.config["kind"] == "fit1d" and alone.config["fit1d"]["variant"] == "residual"
    for extra, where in (("dataset: {name: moons}\n", "dataset"), ("model: {family: nice}\n", "model"),
                         ("matrix:\n  model.family: [nice]\n", "matrix.model.family")):  # fmt: skip
        with pytest.raises(PipelineError, match=rf"{where}: is not used by a fit1d campaign"):
            load_pipeline_text(bare + extra)
    [axis] = expand(load_pipeline_text("name: fit\nmatrix:\n  fit1d.variant: [residual]\n"))  # an axis suffices
    assert axis.config == alone.config and axis.config_hash == alone.config_hash
    with pytest.raises(PipelineError, match=r"dataset\.name: required field missing"):
        expand(load_pipeline_text("name: density\nmodel: {family: nice}\n"))  # a density run still needs one


BASE = """\
name: a
dataset: {name: checkerboard}
model: {family: resflow, preset: small}
"""


def _error(text: str) -> str:
    with pytest.raises(PipelineError) as info:
        load_pipeline_text(text, "a.yaml")
    return str(info.value)


def test_analysis_section_defaults_keep_plain_runs_unchanged() -> None:
    plain = expand(load_pipeline_text(BASE))[0]
    explicit = expand(load_pipeline_text(BASE + "analysis: {kind: none, terms: [3]}\n"))[0]
    assert "analysis" not in plain.config
    assert explicit.config == plain.config and explicit.config_hash == plain.config_hash == config_hash(plain.config)


def test_analysis_options_enter_the_config_hash() -> None:
    one = expand(load_pipeline_text(BASE + "analysis: {kind: estimator_bias, terms: [2, 1, 2]}\n"))[0]
    two = expand(load_pipeline_text(BASE + "analysis: {kind: estimator_bias, terms: [1, 2, 3]}\n"))[0]
    assert one.config["analysis"] == {"kind": "estimator_bias", "terms": [1, 2], "repeats": 100, "points": 256}
    assert one.config_hash != two.config_hash
    fits = expand(load_pipeline_text("name: f\nfit1d: {branch: mlp, hidden: [8]}\n"))[0]
    assert fits.config["fit1d"]["hidden"] == [8] and "dense_growth" not in fits.config["fit1d"]


def test_analysis_and_fit1d_matrix_axes_and_set_override() -> None:
    text = BASE + "matrix:\n  analysis.kind: [none, estimator_bias]\n"
    plain, bias = expand(load_pipeline_text(text))
    assert "analysis" not in plain.config and bias.config["analysis"]["kind"] == "estimator_bias"
    [only] = expand(load_pipeline_text("name: f\nfit1d: {}\n", overrides=["fit1d.variant=residual"]))
    assert only.config["fit1d"]["variant"] == "residual"


@pytest.mark.parametrize(
    ("analysis", "message"),
    [
        ("{kind: bias}", "a.yaml:4 analysis.kind: 'bias' is not one of: none, estimator_bias"),
        ("{kind: fit1d}", "a.yaml:4 analysis.kind: 'fit1d' is not one of: none, estimator_bias"),
        ("{variant: residual}", "a.yaml:4 analysis.variant: 'variant' is not a field of analysis; allowed: kind, "),
        ("{terms: [1, 0]}", "a.yaml:4 analysis.terms[1]: 0 is out of range: must be > 0"),
        ("{terms: []}", "a.yaml:4 analysis.terms: [] has 0 items; expected at least 1"),
        ("{repeats: 1}", "a.yaml:4 analysis.repeats: 1 is out of range: must be >= 2"),
        ("{kind: estimator_bias, steps: 5}", "a.yaml:4 analysis.steps: 'steps' is not a field of analysis; allowed: "),
    ],
)
def test_analysis_errors_name_the_option(analysis: str, message: str) -> None:
    error = _error(BASE + f"analysis: {analysis}\n")
    assert error.startswith(message) and "\n" not in error
