"""Campaign expansion: product order, config hashes, derived seeds, overrides."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from nflab.pipelines import Pipeline, PipelineError, campaign_fingerprint, expand, load_pipeline_text
from nflab.pipelines.hashing import config_hash, derive_seed

BASE = """\
name: camp
dataset: {name: moons}
model: {family: realnvp, preset: small}
train: {steps: 10, seed: 3}
resources: {cpu: 1, gpu: 0}
"""


def runs(text: str, overrides: tuple[str, ...] = ()) -> list:
    return expand(load_pipeline_text(text, "camp.yaml", overrides))


def test_product_size_and_order() -> None:
    text = BASE + "matrix:\n  dataset.name: [moons, rings, circles]\n  model.family: [nice, maf]\nrepeats: 2\n"
    specs = runs(text)
    assert len(specs) == 3 * 2 * 2
    order = [(s.overrides["dataset.name"], s.overrides["model.family"], s.repeat) for s in specs]
    assert order[:5] == [
        ("moons", "nice", 0),
        ("moons", "nice", 1),
        ("moons", "maf", 0),
        ("moons", "maf", 1),
        ("rings", "nice", 0),
    ]
    assert order[-1] == ("circles", "maf", 1)
    assert len({s.run_key for s in specs}) == len(specs)
    assert all(s.campaign == "camp" for s in specs)


def test_no_matrix_gives_one_run_with_resolved_config() -> None:
    (spec,) = runs(BASE)
    assert spec.overrides == {}
    assert spec.config["model"] == {
        "family": "realnvp",
        "couplings": 6,
        "hidden": [64, 64],
        "mask": "alternate",
        "conditioner": "mlp",
        "scale": "tanh",
        "scales": 2,
        "width": 16,
        "res_blocks": 1,
        "preprocess": "logit",
        "alpha": 0.05,
    }
    assert spec.config["eval"]["best_metric"] == "nats"
    assert spec.config["dataset"]["n_bins"] is None
    assert spec.run_key == f"{spec.config_hash[:12]}-s3-r0"
    assert json.loads(json.dumps(spec.model_dump())) == spec.model_dump()


def test_image_dataset_derives_bins_and_metric() -> None:
    (digits,) = runs(BASE.replace("moons", "digits"))
    assert digits.config["dataset"]["n_bins"] == 17
    assert digits.config["eval"]["best_metric"] == "bpd"
    (mnist,) = runs(BASE.replace("moons", "mnist"))
    assert mnist.config["dataset"]["n_bins"] == 256


def test_seeds_share_a_hash_and_get_distinct_seeds() -> None:
    specs = runs(BASE + "matrix:\n  train.seed: [0, 1, 2]\nrepeats: 2\n")
    assert len({s.config_hash for s in specs}) == 1
    assert len({s.seed for s in specs}) == 6
    assert len({s.run_key for s in specs}) == 6
    assert [s.run_key.split("-", 1)[1] for s in specs] == ["s0-r0", "s0-r1", "s1-r0", "s1-r1", "s2-r0", "s2-r1"]
    assert all(0 <= s.seed < 2**31 for s in specs)
    again = runs(BASE + "matrix:\n  train.seed: [0, 1, 2]\nrepeats: 2\n")
    assert [s.seed for s in again] == [s.seed for s in specs]


def test_derived_seed_formula() -> None:
    (spec,) = runs(BASE)
    digest = hashlib.sha256(b"seed:3:0").digest()
    assert spec.seed == int.from_bytes(digest[:4], "big") % 2**31 == derive_seed(3, 0)


def test_seeds_do_not_depend_on_the_configuration() -> None:
    """Two families (and two step budgets) of one campaign get the same seeds: paired data streams."""
    specs = runs(BASE + "matrix:\n  model.family: [realnvp, nice]\n  train.steps: [10, 20]\nrepeats: 2\n")
    assert len({s.config_hash for s in specs}) == 4
    by_repeat: dict[int, set[int]] = {}
    for spec in specs:
        by_repeat.setdefault(spec.repeat, set()).add(spec.seed)
    assert all(len(seeds) == 1 for seeds in by_repeat.values()) and len(by_repeat) == 2


def test_hash_differs_for_different_configs() -> None:
    specs = runs(BASE + "matrix:\n  train.lr: [0.001, 0.002]\n")
    assert specs[0].config_hash != specs[1].config_hash


def test_hash_ignores_key_order_resources_and_spelling_of_defaults() -> None:
    (a,) = runs(BASE)
    reordered = """\
resources: {gpu: 0.5, cpu: 4, retries: 0}
train: {seed: 3, steps: 10, batch_size: 500}
model: {preset: small, family: realnvp, couplings: 6}
dataset: {name: moons}
name: camp
"""
    (b,) = runs(reordered)
    assert a.config_hash == b.config_hash
    assert a.seed == b.seed
    assert b.config["resources"] == {"cpu": 4.0, "gpu": 0.5, "retries": 0}


def test_hash_is_canonical_json_minus_seed_and_resources() -> None:
    (spec,) = runs(BASE)
    config = json.loads(json.dumps(spec.config))
    del config["resources"]
    del config["train"]["seed"]
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    assert spec.config_hash == hashlib.sha256(text.encode()).hexdigest() == config_hash(spec.config)


def test_hash_is_stable_across_processes() -> None:
    code = (
        "from nflab.pipelines import expand, load_pipeline_text;"
        f"print(expand(load_pipeline_text({BASE!r}, 'x.yaml'))[0].config_hash)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == runs(BASE)[0].config_hash


def test_set_overrides_a_matrix_axis_and_plain_values() -> None:
    text = BASE + "matrix:\n  model.family: [nice, maf, glow]\n"
    specs = runs(text, ("model.family=maf", "train.steps=42"))
    assert len(specs) == 1
    assert specs[0].overrides == {"model.family": "maf"}
    assert specs[0].config["model"]["family"] == "maf"
    assert specs[0].config["train"]["steps"] == 42


def test_matrix_over_a_model_option() -> None:
    specs = runs(BASE + "matrix:\n  model.hidden: [[16], [32, 32]]\n")
    assert [s.config["model"]["hidden"] for s in specs] == [[16], [32, 32]]
    assert specs[0].overrides == {"model.hidden": [16]}


def test_section_axis_varies_options_together() -> None:
    text = BASE + "matrix:\n  model:\n    - {family: nice, couplings: 2}\n    - {family: maf, layers: 3}\n"
    specs = runs(text)
    assert [s.config["model"]["family"] for s in specs] == ["nice", "maf"]
    assert specs[0].config["model"]["couplings"] == 2
    assert specs[1].config["model"]["layers"] == 3
    assert specs[1].overrides == {"model.family": "maf", "model.layers": 3}


def test_combinations_that_resolve_to_the_same_run_are_an_error() -> None:
    explicit = "{family: realnvp, couplings: 6, hidden: [64, 64], scales: 2, width: 16, res_blocks: 1}"
    text = BASE.replace("{family: realnvp, preset: small}", explicit) + "matrix:\n  model.preset: [small, null]\n"
    with pytest.raises(PipelineError) as info:
        runs(text)
    assert str(info.value) == (
        "camp.yaml:6 matrix: the combinations (model.preset=small) and (model.preset=null) resolve to the same run"
    )
    distinct = BASE + "matrix:\n  model.couplings: [6, 4]\n  model.preset: [small, null]\n"
    assert len({s.run_key for s in runs(distinct)}) == 4


def test_fingerprint_is_stable_and_sensitive() -> None:
    a = load_pipeline_text(BASE, "a.yaml")
    b = load_pipeline_text(BASE.replace("seed: 3", "seed: 3, log_every: 50"), "b.yaml")
    assert campaign_fingerprint(a) == campaign_fingerprint(b)
    c = load_pipeline_text(BASE.replace("steps: 10", "steps: 11"), "c.yaml")
    assert campaign_fingerprint(a) != campaign_fingerprint(c)
    assert len(campaign_fingerprint(a)) == 64


def test_pipeline_built_in_python_expands() -> None:
    pipeline = Pipeline(name="py", dataset={"name": "rings"}, model={"family": "nice"}, matrix={"train.seed": [0, 1]})
    specs = expand(pipeline)
    assert len(specs) == 2
    with pytest.raises(PipelineError, match=r"^<pipeline> model\.family: 'nope' is not one of: "):
        expand(Pipeline(name="py", dataset={"name": "rings"}, model={"family": "nope"}))


def test_config_axis_sets_several_sections_together() -> None:
    """``matrix.config``: each value sets options of several sections at once (a family with its own protocol)."""
    text = BASE + (
        "matrix:\n  config:\n"
        "    - {model: {family: glow}, train: {optimizer: adamax, lr: 0.002}}\n"
        "    - {model: {family: nice}, train: {batch_size: 32}, resources: {gpu: 0.5}}\n"
        "  train.seed: [0, 1]\n"
    )
    specs = runs(text)
    assert len(specs) == 4
    glow, nice = specs[0], specs[2]
    assert glow.config["model"]["family"] == "glow" and glow.config["train"]["optimizer"] == "adamax"
    assert glow.overrides["train.lr"] == 0.002 and glow.overrides["model.family"] == "glow"
    assert nice.config["train"]["batch_size"] == 32 and nice.config["train"]["optimizer"] == "adam"
    assert nice.config["resources"]["gpu"] == 0.5 and glow.config["resources"]["gpu"] == 0
    with pytest.raises(PipelineError, match="'trian' is not a section"):
        runs(BASE + "matrix:\n  config:\n    - {trian: {steps: 3}}\n")
    bad = BASE + "matrix:\n  config:\n    - {model: {family: glow}}\n    - {model: {family: glow, depth: -1}}\n"
    with pytest.raises(PipelineError, match=r"camp.yaml:9 model.depth: -1"):
        runs(bad)
