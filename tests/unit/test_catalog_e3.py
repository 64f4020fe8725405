"""The E3 image pipelines resolve (no training) to the published models and protocols: the families of the table per
dataset, each one's optimiser and batch, the published parameter counts (Monotone Flows Table 2) within 2 %, a paper
row on the leaderboard for every family of every dataset, and a quick variant on the same code path."""

from __future__ import annotations

import pytest
import torch

import nflab.flows as flows
from nflab.pipelines import expand, load_pipeline
from nflab.reference_results import references

DATASETS = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32), "imagenet32": (3, 32, 32), "imagenet64": (3, 64, 64)}
FAMILIES = {
    "mnist": {"realnvp", "glow", "ffjord", "iresnet", "resflow", "monotone"},
    "cifar10": {"realnvp", "glow", "ffjord", "iresnet", "resflow", "idensenet", "monotone", "monotone+vdq", "cif"},
    "imagenet32": {"realnvp", "glow", "resflow", "idensenet", "monotone", "monotone+vdq"},
    "imagenet64": {"realnvp", "glow", "resflow", "monotone"},
}
# Monotone Flows Table 2
PUBLISHED_PARAMS = {
    ("monotone", "mnist"): 20.9e6,
    ("monotone", "cifar10"): 24.9e6,
    ("monotone", "imagenet32"): 47.0e6,
    ("monotone", "imagenet64"): 48.9e6,
    ("resflow", "mnist"): 16.6e6,
    ("resflow", "cifar10"): 25.2e6,
}
# the paper's models on the leaderboard, by nflab family (the VDQ row has no family of its own)
PAPER_MODELS = {"monotone+vdq": "Monotone Flow + VDQ"}


def _label(model: dict) -> str:
    return model["family"] + ("+vdq" if model.get("dequantization") == "variational" else "")


def _runs(name: str) -> dict[str, dict]:
    return {_label(spec.config["model"]): spec.config for spec in expand(load_pipeline(name))}


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_e3_pipeline_has_the_families_of_the_table(dataset: str) -> None:
    runs = _runs(f"e3-{dataset}")
    assert set(runs) == FAMILIES[dataset]
    for config in runs.values():
        assert config["dataset"]["name"] == dataset
        assert config["eval"]["best_metric"] == "bpd"
        assert config["resources"]["gpu"] in (0.5, 1.0)
    lipschitz = [runs[f] for f in ("resflow", "monotone") if f in runs]
    for config in lipschitz:  # Residual Flows' loop (flows-reference §1.6)
        train = config["train"]
        assert train["optimizer"] == "adam" and train["betas"] == [0.9, 0.99]
        assert train["warmup_steps"] == 1000 and train["grad_clip"] == 1.0 and train["ema"] == 0.999
        assert config["model"]["estimator"] == "roulette" and config["model"]["dist"] == "poisson"
        assert config["model"]["eval_n_exact_terms"] == 20
    assert runs["monotone"]["model"]["n_exact_terms"] == 10
    assert runs["glow"]["train"]["optimizer"] == "adamax"
    if "ffjord" in runs:
        assert runs["ffjord"]["train"]["batch_size"] == 200 and runs["ffjord"]["resources"]["gpu"] == 0.5
    if "iresnet" in runs:
        assert runs["iresnet"]["train"]["batch_size"] == 128 and runs["iresnet"]["train"]["lr"] == 3e-3
    if "cif" in runs:
        assert runs["cif"]["model"]["num_importance_samples"] == 100 and runs["cif"]["model"]["channels"] == 128
    if dataset == "mnist":
        assert runs["monotone"]["model"]["alpha"] == 1e-6 and runs["resflow"]["model"]["alpha"] == 1e-6
    if dataset.startswith("imagenet"):
        assert runs["monotone"]["train"]["batch_size"] == 256 and runs["monotone"]["train"]["lr"] == 4e-3
        assert runs["resflow"]["model"]["blocks"] == [32, 32, 32]
    if dataset == "imagenet64":
        assert runs["monotone"]["model"]["squeeze_first"] and runs["monotone"]["model"]["factor_out"]
        assert runs["glow"]["model"]["levels"] == 4 and runs["glow"]["model"]["depth"] == 48


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_every_e3_family_has_its_paper_row(dataset: str) -> None:
    rows = references(metric="bpd", dataset=dataset)
    by_family = {r.family for r in rows}
    by_model = {r.model for r in rows}
    for label in FAMILIES[dataset]:
        assert (PAPER_MODELS[label] in by_model) if label in PAPER_MODELS else (label in by_family), label


@pytest.mark.parametrize(("family", "dataset"), sorted(PUBLISHED_PARAMS))
def test_e3_models_have_the_published_parameter_counts(family: str, dataset: str) -> None:
    options = dict(_runs(f"e3-{dataset}")[family]["model"])
    del options["family"]
    torch.set_num_threads(1)
    model = flows.build(family, DATASETS[dataset], **options)
    count = sum(p.numel() for p in model.parameters())
    assert count == pytest.approx(PUBLISHED_PARAMS[(family, dataset)], rel=0.02)


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_e3_quick_variant_runs_the_same_families_on_digits(dataset: str) -> None:
    full, quick = _runs(f"e3-{dataset}"), _runs(f"e3-{dataset}-quick")
    assert set(quick) == set(full)
    for label, config in quick.items():
        assert config["dataset"]["name"] == "digits" and config["resources"]["gpu"] == 0
        same = ("optimizer", "betas", "grad_clip", "ema", "weight_decay")
        assert {k: config["train"][k] for k in same} == {k: full[label]["train"][k] for k in same}, label
        for key in ("estimator", "dist", "n_exact_terms", "neumann_grad", "memory_efficient", "alpha"):
            if key in full[label]["model"]:
                assert config["model"][key] == full[label]["model"][key], (label, key)


def test_dataset_presets_are_declared_once() -> None:
    """The per-dataset models are named presets of the families (``nflab models FAMILY``), not YAML copies."""
    assert {"mnist", "cifar10", "imagenet32", "imagenet64"} <= set(flows.registry.family("monotone").presets)
    assert {"mnist", "cifar10", "imagenet32", "imagenet64"} <= set(flows.registry.family("resflow").presets)
    assert {"imagenet32", "imagenet64"} <= set(flows.registry.family("glow").presets)
    assert flows.registry.defaults("monotone", "images", "mnist")["alpha"] == 1e-6
    assert flows.registry.defaults("monotone", "images", "imagenet64")["factor_out"] is True
