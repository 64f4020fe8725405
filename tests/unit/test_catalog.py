"""The catalog pipelines load, expand and follow the published protocols."""

from __future__ import annotations

import pytest

from nflab.flows.data import TOY_DATASETS
from nflab.pipelines import catalog_path, expand, list_catalog, load_pipeline, pipeline_path

EXPECTED = {"e2-toy", "e2-toy-quick", "digits", "digits-quick"}


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


def test_catalog_name_loads_without_a_path() -> None:
    assert load_pipeline("e2-toy-quick").name == "e2-toy-quick"
    assert pipeline_path("e2-toy-quick") == catalog_path("e2-toy-quick")


def test_e2_toy_follows_the_paper_protocol() -> None:
    specs = expand(load_pipeline(catalog_path("e2-toy")))
    assert len(specs) == 8 * 4
    assert {s.config["dataset"]["name"] for s in specs} == set(TOY_DATASETS)
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
        assert cfg["eval"]["best_metric"] == "nats"
        assert cfg["estimator"]["kind"] == "exact"
    realnvp = next(s for s in specs if s.config["model"]["family"] == "realnvp")
    assert realnvp.config["model"]["couplings"] == 8
    assert realnvp.config["model"]["hidden"] == [128, 128]


def test_e2_toy_quick_is_small() -> None:
    specs = expand(load_pipeline(catalog_path("e2-toy-quick")))
    assert len(specs) == 3 * 4
    assert {s.config["dataset"]["name"] for s in specs} == {"8gaussians", "checkerboard", "moons"}
    assert {s.config["model"]["family"] for s in specs} == {"nice", "realnvp", "maf", "glow"}
    for spec in specs:
        assert spec.config["train"]["steps"] <= 2500
        assert spec.config["train"]["batch_size"] == 256
        assert spec.config["train"]["eval_every"] == 250
        assert spec.config["dataset"]["test_samples"] == 2000
        assert max(spec.config["model"]["hidden"]) <= 64


def test_digits_pipelines() -> None:
    full = expand(load_pipeline(catalog_path("digits")))
    quick = expand(load_pipeline(catalog_path("digits-quick")))
    for specs, steps in ((full, 20000), (quick, 300)):
        assert [s.config["model"]["family"] for s in specs] == ["realnvp", "glow"]
        for spec in specs:
            assert spec.config["dataset"] == {
                "name": "digits",
                "test_samples": 10000,
                "train_subset": None,
                "n_bins": 17,
            }
            assert spec.config["train"]["steps"] == steps
            assert spec.config["train"]["batch_size"] == 64
            assert spec.config["eval"]["best_metric"] == "bpd"
    assert full[1].config["model"]["depth"] == 32  # Glow's published K
    assert quick[1].config["model"]["depth"] == 4  # Glow's small preset
    assert all(s.config["train"]["eval_every"] == 100 for s in quick)
