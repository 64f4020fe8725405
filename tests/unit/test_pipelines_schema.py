"""Pipeline loading errors: one line, ``file:line path: value and what is allowed``."""

from __future__ import annotations

import pytest

from nflab.flows import available
from nflab.pipelines import PipelineError, check_dataset_available, expand, load_pipeline, load_pipeline_text

FAMILIES = ", ".join(available())

TOY = """\
name: toy
dataset:
  name: checkerboard
train:
  steps: 100
model:
  family: realnvp
  hidden: [64, 64]
"""


def error_of(text: str, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(PipelineError) as info:
        load_pipeline_text(text, "toy.yaml", overrides)
    message = str(info.value)
    assert "\n" not in message
    assert "Traceback" not in message
    return message


def test_valid_pipeline_loads_with_defaults() -> None:
    pipeline = load_pipeline_text(TOY, "toy.yaml")
    assert pipeline.name == "toy"
    assert pipeline.train.steps == 100
    assert pipeline.train.batch_size == 500
    assert pipeline.estimator.kind is None  # the family's published default
    assert pipeline.resources.retries == 2


def test_unknown_family_names_line_value_and_families() -> None:
    message = error_of(TOY.replace("family: realnvp", "family: monotne"))
    assert message == f"toy.yaml:7 model.family: 'monotne' is not one of: {FAMILIES}"


def test_unknown_model_option_lists_the_family_options() -> None:
    message = error_of(TOY.replace("hidden: [64, 64]", "hiden: [64, 64]"))
    assert message.startswith("toy.yaml:8 model.hiden: 'hiden' is not an option of realnvp; allowed: couplings, ")
    assert "preset" in message


def test_bad_model_option_value() -> None:
    assert error_of(TOY + "  scale: cubic\n") == "toy.yaml:9 model.scale: 'cubic' is not one of: tanh, exp, sigmoid"
    message = error_of(TOY.replace("[64, 64]", "[64, x]"))
    assert message == "toy.yaml:8 model.hidden[1]: 'x' is not an integer >= 1 and <= 65536"
    assert (
        error_of(TOY.replace("[64, 64]", "[-1]"))
        == "toy.yaml:8 model.hidden[0]: -1 is not an integer >= 1 and <= 65536"
    )


def test_wrong_type() -> None:
    assert error_of(TOY.replace("steps: 100", "steps: abc")) == "toy.yaml:5 train.steps: 'abc' is not an integer"
    assert error_of(TOY + "eval: {exact: maybe}\n") == "toy.yaml:9 eval.exact: 'maybe' is not auto or a boolean"


def test_out_of_range() -> None:
    assert (
        error_of(TOY.replace("steps: 100", "steps: 0"))
        == "toy.yaml:5 train.steps: 0 is out of range: must be > 0 and <= 1000000000"
    )
    message = error_of(TOY + "estimator: {kind: roulette, geom_p: 1.5}\n")
    assert message == "toy.yaml:9 estimator.geom_p: 1.5 is out of range: must be > 0 and < 1"
    assert error_of(TOY + "resources:\n  gpu: -1\n") == "toy.yaml:10 resources.gpu: -1 is out of range: must be >= 0"


def test_unknown_key_lists_allowed_keys() -> None:
    message = error_of(TOY.replace("steps: 100", "stpes: 100"))
    assert message.startswith("toy.yaml:5 train.stpes: 'stpes' is not a field of train; allowed: steps, batch_size, ")
    top = error_of(TOY + "matrx: {}\n")
    assert top.startswith("toy.yaml:9 matrx: 'matrx' is not a field of the pipeline; allowed: name, dataset, model")


def test_missing_required_field_points_at_parent() -> None:
    assert error_of(TOY.replace("name: toy\n", "")) == "toy.yaml:1 name: required field missing"
    message = error_of(TOY.replace("  family: realnvp\n", ""))
    assert message.startswith("toy.yaml:6 model.family: required field missing")


def test_unknown_dataset_and_bad_name() -> None:
    message = error_of(TOY.replace("name: checkerboard", "name: chekerboard"))
    assert message.startswith("toy.yaml:3 dataset.name: 'chekerboard' is not one of: 8gaussians, 2spirals, ")
    assert "digits, mnist" in message
    assert error_of(TOY.replace("name: toy", "name: a b")).startswith("toy.yaml:1 name: 'a b' is not a valid name")


def test_yaml_syntax_error_has_line() -> None:
    message = error_of(TOY.replace("hidden: [64, 64]", "hidden: [64, 64"))
    assert message.startswith("toy.yaml:9: YAML syntax error: ")


def test_duplicate_key_is_an_error() -> None:
    message = error_of(TOY + "  hidden: [32]\n")
    assert message == "toy.yaml:9 model.hidden: 'hidden' appears twice (first on line 8)"


def test_top_level_must_be_a_mapping() -> None:
    assert error_of("- a\n- b\n") == "toy.yaml:1: the top level must be a mapping of fields, not a list"
    assert error_of("") == "toy.yaml:1: the top level must be a mapping of fields, not an empty file"


def test_bad_matrix_path_and_values() -> None:
    message = error_of(TOY + "matrix:\n  train.stepz: [1, 2]\n")
    assert message.startswith("toy.yaml:10 matrix.train.stepz: 'stepz' is not a field of train; allowed: steps")
    message = error_of(TOY + "matrix:\n  optim.lr: [1, 2]\n")
    assert message.startswith("toy.yaml:10 matrix.optim.lr: 'optim.lr' is not a path of the schema; allowed: ")
    assert error_of(TOY + "matrix:\n  train.steps: 5\n") == "toy.yaml:10 matrix.train.steps: 5 is not a list of values"
    empty = error_of(TOY + "matrix:\n  train.steps: []\n")
    assert empty == "toy.yaml:10 matrix.train.steps: [] is empty; a matrix axis needs at least one value"
    repeated = error_of(TOY + "matrix:\n  train.seed:\n    - 0\n    - 0\n")
    assert repeated == "toy.yaml:12 matrix.train.seed[1]: 0 repeats an earlier value of this axis"


def test_matrix_combination_error_names_the_values() -> None:
    text = TOY + "  scale: exp\nmatrix:\n  model.family: [realnvp, nice]\n"
    message = error_of(text)
    assert message.startswith("toy.yaml:9 model.scale: 'scale' is not an option of nice; allowed: couplings")
    assert message.endswith("(matrix: model.family=nice)")


def test_bad_matrix_value_points_at_its_line() -> None:
    text = TOY + "matrix:\n  model.scale:\n    - tanh\n    - cubic\n"
    message = error_of(text)
    assert message == "toy.yaml:12 model.scale: 'cubic' is not one of: tanh, exp, sigmoid (matrix: model.scale=cubic)"
    value = error_of(TOY + "matrix:\n  train.lr: [0.1, -1]\n")
    assert value == "toy.yaml:10 train.lr: -1 is out of range: must be > 0 (matrix: train.lr=-1)"


def test_set_errors_name_the_option() -> None:
    assert error_of(TOY, ("train.steps=abc",)) == "--set train.steps=abc: train.steps: 'abc' is not an integer"
    message = error_of(TOY, ("train.stpes=5",))
    assert message.startswith("--set train.stpes=5: train.stpes: 'stpes' is not a field of train; allowed: steps")
    assert error_of(TOY, ("steps",)) == "--set steps: expected dotted.path=value"
    assert error_of(TOY, ("model.family=flowy",)).startswith("--set model.family=flowy: model.family: 'flowy' is not")
    assert error_of(TOY, ("foo.bar=1",)).startswith("--set foo.bar=1: foo.bar: 'foo.bar' is not a path of the schema")


def test_set_overrides_values() -> None:
    pipeline = load_pipeline_text(TOY, "toy.yaml", ("train.steps=7", "train.lr=1e-4", "model.hidden=[8, 8]"))
    assert pipeline.train.steps == 7
    assert pipeline.train.lr == pytest.approx(1e-4)


def test_scientific_notation_without_dot_is_a_float() -> None:
    pipeline = load_pipeline_text(TOY + "  alpha: 1e-6\n", "toy.yaml")
    assert pipeline.model.model_dump()["alpha"] == pytest.approx(1e-6)


def test_missing_file_message(tmp_path) -> None:
    with pytest.raises(PipelineError) as info:
        load_pipeline(tmp_path / "nope.yaml")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'nope.yaml'}: no such pipeline file (catalog pipelines: ")
    assert "e2-toy" in message


def test_load_pipeline_uses_the_file_name_in_messages(tmp_path) -> None:
    path = tmp_path / "toy.yaml"
    path.write_text(TOY.replace("family: realnvp", "family: monotne"))
    with pytest.raises(PipelineError, match=r"^toy\.yaml:7 model\.family: 'monotne'"):
        load_pipeline(path)


def test_train_subset_is_for_images_only() -> None:
    message = error_of(TOY.replace("name: checkerboard", "name: checkerboard\n  train_subset: 10"))
    assert message.startswith("toy.yaml:4 dataset.train_subset: 10 is not allowed")


def test_options_meant_for_other_data_are_refused_unless_some_run_uses_them() -> None:
    images = TOY.replace("checkerboard", "digits")
    assert error_of(images) == (
        "toy.yaml:8 model.hidden: [64, 64] is not meaningful for images: hidden applies to vectors only"
    )
    mixed = TOY + "matrix:\n  dataset.name: [checkerboard, digits]\n"
    assert len(expand(load_pipeline_text(mixed, "toy.yaml"))) == 2  # the toy run uses hidden


def test_dataset_availability(tmp_path) -> None:
    toy = load_pipeline_text(TOY, "toy.yaml")
    check_dataset_available(toy, tmp_path)
    images = TOY.replace("  hidden: [64, 64]\n", "")  # a vector option: refused for a campaign of image runs
    digits = load_pipeline_text(images.replace("checkerboard", "digits"), "toy.yaml")
    check_dataset_available(digits, tmp_path)
    mnist = load_pipeline_text(images.replace("checkerboard", "mnist"), "toy.yaml")
    with pytest.raises(PipelineError) as info:
        check_dataset_available(mnist, tmp_path)
    message = str(info.value)
    assert message.startswith("toy.yaml:3 dataset.name: 'mnist' is not available: mnist: expected file ")
    assert str(tmp_path) in message
    assert "\n" not in message
