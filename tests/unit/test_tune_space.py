"""The ``tune`` section: spaces from the declarations, one-line errors at the YAML line, trial specs, best trials."""

from __future__ import annotations

import math

import optuna
import pytest

from nflab.pipelines import PipelineError, load_pipeline_text
from nflab.pipelines.tune_space import search_space, trial_spec

BASE = """\
name: t
dataset: {name: checkerboard}
model: {family: monotone, preset: small}
train: {steps: 20, eval_every: 10}
tune:
  trials: 3
"""


def load(space: str = "", *extra: str) -> object:
    text = BASE + (f"  space: {space}\n" if space else "") + "".join(f"  {e}\n" for e in extra)
    return load_pipeline_text(text, "t.yaml")


def paths(space: str) -> list[str]:
    return [d.path for d in search_space(load(space))]


def test_named_spaces_come_from_the_declarations() -> None:
    assert paths("lipschitz") == ["model.coeff", "model.power_iterations", "model.lip_coeff"]
    assert {"model.cpila_k", "model.cpila_shift", "model.activation"} <= set(paths("activation"))
    assert {"model.estimator", "model.n_exact_terms"} <= set(paths("estimator"))
    assert paths("optimizer") == ["train.lr", "train.optimizer"]
    both = paths("[lipschitz, optimizer]")
    assert both == ["model.coeff", "model.power_iterations", "model.lip_coeff", "train.lr", "train.optimizer"]
    dims = {d.path: d for d in search_space(load("lipschitz"))}
    assert (dims["model.coeff"].low, dims["model.coeff"].high, dims["model.coeff"].kind) == (0.5, 0.99, "float")
    assert dims["model.power_iterations"].kind == "int"
    lr = next(d for d in search_space(load("optimizer")) if d.path == "train.lr")
    assert lr.log and lr.low == 1e-4


def test_options_the_pipeline_sets_stay_fixed() -> None:
    text = BASE.replace("preset: small}", "preset: small, coeff: 0.9}") + "  space: lipschitz\n"
    assert [d.path for d in search_space(load_pipeline_text(text, "t.yaml"))] == [
        "model.power_iterations",
        "model.lip_coeff",
    ]


def test_explicit_space_and_declared_default_range() -> None:
    dims = search_space(load("{model.cpila_k: {low: 1, high: 10}, train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}}"))
    assert [(d.path, d.kind, d.low, d.high, d.log) for d in dims] == [
        ("model.cpila_k", "float", 1, 10, False),
        ("train.lr", "float", 1e-4, 1e-2, True),
    ]
    (coeff,) = search_space(load("{model.coeff: {}}"))
    assert (coeff.low, coeff.high) == (0.5, 0.99)
    (act,) = search_space(load("{model.activation: {choices: [cpila, lipswish]}}"))
    assert act.choices == ("cpila", "lipswish")


@pytest.mark.parametrize(
    ("space", "extra", "expected"),
    [
        ("{model.nope: {low: 1, high: 2}}", (), "t.yaml:7 tune.space.model.nope: 'nope' is not an option of monotone"),
        ("{model.coeff: {low: 0.5, high: 1.5}}", (), "tune.space.model.coeff.high: 1.5 is outside the declared bounds"),
        ("{model.power_iterations: {low: 1.5, high: 3}}", (), "low: 1.5 is not an integer"),
        ("{model.coeff: {low: 0.9, high: 0.5}}", (), "high: 0.5 is not greater than low (0.9)"),
        ("{train.lr: {low: 0.0, high: 0.1, log: true}}", (), "train.lr.low: 0.0 is outside the declared bounds"),
        ("{model.activation: {low: 1, high: 2}}", (), "it takes choices, not a range"),
        ("{model.activation: {choices: [cpila, tanh]}}", (), "choices[1]: 'tanh' is not one of"),
        ("{model.fc_blocks: {low: 1, high: 3}}", (), "applies to images only"),
        ("{train.seed: {low: 0, high: 3}}", (), "'seed' is not a tunable field of train"),
        ("{dataset.name: {choices: [moons]}}", (), "'dataset.name' is not a tunable path"),
        ("solver", (), "tune.space: solver has no tunable option of monotone"),
        ("lipschitz", ("sampler: {kind: grid}",), "tune.sampler.kind: grid needs choices or integer ranges"),
        ("lipschitz", ("pruner: {kind: asha}",), "tune.pruner.kind: 'asha' is not one of"),
        ("lipschitz", ("sampler: {kind: random, startup: sobol}",), "startup applies to the samplers tpe, cmaes, gp"),
        ("lipschitz", ("sampler: {kind: tpe, startup: halton}",), "tune.sampler.startup: 'halton' is not one of"),
        ("lipschitz", ("also: [flops]",), "tune.also[0]: 'flops' is not"),
        ("lipschitz", ("parallel: 0",), "tune.parallel"),
        ("bogus", (), "tune.space"),
    ],
)
def test_bad_tune_sections_are_one_line(space: str, extra: tuple[str, ...], expected: str) -> None:
    with pytest.raises(PipelineError) as info:
        load(space, *extra)
    message = str(info.value)
    assert "\n" not in message
    assert expected in message, message


def test_a_tuned_pipeline_has_no_matrix() -> None:
    text = BASE + "  space: lipschitz\nmatrix:\n  train.seed: [0, 1]\n"
    with pytest.raises(PipelineError, match="a tuned pipeline has no matrix"):
        load_pipeline_text(text, "t.yaml")


def test_trial_spec_applies_values_and_hashes() -> None:
    pipeline = load("lipschitz")
    a = trial_spec(pipeline, {"model.coeff": 0.7, "model.power_iterations": 3}, 4, "s")
    b = trial_spec(pipeline, {"model.coeff": 0.8, "model.power_iterations": 3}, 5, "s")
    assert a["config"]["model"]["coeff"] == 0.7 and a["config"]["model"]["power_iterations"] == 3
    assert a["run_key"].startswith("t0004-") and a["config_hash"] != b["config_hash"]
    assert a["seed"] == b["seed"]  # paired: every trial sees the same data stream


def test_set_overrides_reach_the_tune_section() -> None:
    text = BASE + "  space: lipschitz\n"
    pipeline = load_pipeline_text(text, "t.yaml", ["tune.trials=7", "tune.sampler.seed=3"])
    assert pipeline.tune.trials == 7 and pipeline.tune.sampler.seed == 3


def test_infeasible_trials_are_never_best() -> None:
    from nflab.tune import best_trials

    study = optuna.create_study(direction="minimize")
    for value, violation in ((1.0, 0.5), (2.0, 0.0), (3.0, -1.0)):
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        trial.set_constraint("inversion_error", violation)
        study.tell(trial, value)
    best = best_trials(study)
    assert [b["number"] for b in best] == [1] and best[0]["feasible"]


def test_constraint_values_from_certificates() -> None:
    from types import SimpleNamespace

    from nflab.tune import constraint_values

    prep = SimpleNamespace(tune=SimpleNamespace(constraints={"inversion_error": 1e-3, "jacobian_norm": 2.0}))
    values = constraint_values({"certificates": {"inversion_error": 5e-3, "jacobian_norm": None}}, prep)  # type: ignore[arg-type]
    assert math.isclose(values["inversion_error"], 4e-3) and values["jacobian_norm"] == 0.0


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes", "gp", "nsga2", "grid"])
@pytest.mark.parametrize("pruner", ["median", "hyperband", "successive_halving", "none"])
def test_every_sampler_and_pruner_works_with_ask_and_tell(sampler: str, pruner: str) -> None:
    """The driver's objects on a real in-memory study: ask with the space's distributions, report, prune, tell."""
    import importlib.util
    from types import SimpleNamespace

    from nflab.tune import distributions, make_pruner, make_sampler

    if sampler == "cmaes" and importlib.util.find_spec("cmaes") is None:
        pytest.skip("cmaes is not installed (the driver refuses it with one line)")
    space = "{model.power_iterations: {low: 1, high: 4}, model.n_exact_terms: {low: 0, high: 2}}"
    if sampler not in ("grid",):
        space = "{model.coeff: {}, train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}}"
    pipeline = load(space, f"sampler: {{kind: {sampler}, seed: 0}}", f"pruner: {{kind: {pruner}}}")
    prep = SimpleNamespace(pipeline=pipeline, tune=pipeline.tune, dims=search_space(pipeline), objectives=["nats"])
    study = optuna.create_study(sampler=make_sampler(prep), pruner=make_pruner(prep))
    dists = distributions(prep.dims)
    for i in range(4):
        trial = study.ask(dists)
        for step in (10, 20):
            trial.report(float(i) + 1.0 / step, step)
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            try:
                study.tell(trial, float(i))
            except RuntimeError as exc:  # the grid stops the study after its last point (see StudyDriver._tell)
                assert "Study.stop" in str(exc)
    assert len(study.trials) == 4
    assert all(set(t.params) == {d.path for d in prep.dims} for t in study.trials)


@pytest.mark.parametrize("pruner", ["median", "hyperband", "successive_halving"])
def test_no_pruner_decides_before_the_warmup_step(pruner: str) -> None:
    """``pruner.warmup_steps`` holds for every pruner: a clearly worse trial survives every report before it and is
    pruned at the first report at or after it (Hyperband and successive halving: their first rung)."""
    from types import SimpleNamespace

    from nflab.tune import make_pruner

    text = BASE.replace("steps: 20, eval_every: 10", "steps: 900, eval_every: 10")
    pipeline = load_pipeline_text(
        text + f"  pruner: {{kind: {pruner}, startup_trials: 0, warmup_steps: 300}}\n", "t.yaml"
    )
    prep = SimpleNamespace(pipeline=pipeline, tune=pipeline.tune, objectives=["nats"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), pruner=make_pruner(prep))
    first_pruned: list[int] = []
    for i in range(12):  # good trials first, then worse and worse ones
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        for step in range(10, 910, 10):
            trial.report(float(i), step)
            if trial.should_prune():
                first_pruned.append(step)
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, float(i))
    assert first_pruned, "no worse trial was pruned at all"
    assert min(first_pruned) >= 300


@pytest.mark.parametrize("pruner", ["hyperband", "successive_halving"])
def test_reduction_factor_sets_the_share_promoted_past_the_first_rung(pruner: str) -> None:
    """η = ``pruner.reduction_factor``: successive halving promotes the best 1/η of a rung; more trials pass the
    first rung with η = 2 than with η = 4 on the same reports (Hyperband: in its most aggressive bracket)."""
    from types import SimpleNamespace

    from nflab.tune import make_pruner

    text = BASE.replace("steps: 20, eval_every: 10", "steps: 900, eval_every: 100")

    def promoted(eta: int) -> int:
        pipeline = load_pipeline_text(
            text + f"  pruner: {{kind: {pruner}, warmup_steps: 100, reduction_factor: {eta}}}\n", "t.yaml"
        )
        prep = SimpleNamespace(pipeline=pipeline, tune=pipeline.tune, objectives=["nats"])
        study = optuna.create_study(study_name="eta", pruner=make_pruner(prep))
        passed = 0
        for i in range(24):  # values in a shuffled order: each rung sees better and worse ones
            trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
            value = float((i * 7) % 24)
            for step in range(100, 1000, 100):
                trial.report(value, step)
                if trial.should_prune():
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    break
            else:
                study.tell(trial, value)
            passed += step > 100
        return passed

    assert promoted(2) > promoted(4) > 0


SOBOL_SPACE = (
    "{model.coeff: {}, train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}, model.n_exact_terms: {low: 0, high: 6}}"
)


def sobol_study(seed: int, kind: str = "tpe", trials: int = 12) -> tuple[optuna.Study, list[dict]]:
    """``trials`` trials of a study with 8 start-up trials on the Sobol sequence; returns it and the trials' params."""
    from types import SimpleNamespace

    from nflab.tune import distributions, make_sampler

    sampler = f"sampler: {{kind: {kind}, seed: {seed}, startup_trials: 8, startup: sobol}}"
    pipeline = load(SOBOL_SPACE, sampler)
    prep = SimpleNamespace(pipeline=pipeline, tune=pipeline.tune, dims=search_space(pipeline), objectives=["nats"])
    study = optuna.create_study(sampler=make_sampler(prep))
    dists = distributions(prep.dims)
    for _ in range(trials):
        trial = study.ask(dists)
        study.tell(trial, (trial.params["model.coeff"] - 0.9) ** 2 + abs(math.log10(trial.params["train.lr"]) + 2.5))
    return study, [t.params for t in study.trials]


def eighths(values: list[float], low: float, high: float) -> list[int]:
    return sorted(int(8 * (v - low) / (high - low)) for v in values)


@pytest.mark.parametrize("seed", range(6))
def test_sobol_startup_puts_one_start_up_trial_in_each_eighth_of_every_range(seed: int) -> None:
    """``startup: sobol``: the 8 start-up trials stratify every float range (log ranges on the log scale), for every
    seed — 8 random draws leave a whole quarter of a range empty with probability 4 × (3/4)^8 ≈ 40 %."""
    _, params = sobol_study(seed)
    start = params[:8]
    assert eighths([p["model.coeff"] for p in start], 0.5, 0.99) == list(range(8))
    assert eighths([math.log(p["train.lr"]) for p in start], math.log(1e-4), math.log(1e-2)) == list(range(8))
    terms = [p["model.n_exact_terms"] for p in start]
    assert all(isinstance(t, int) and 0 <= t <= 6 for t in terms) and len(set(terms)) >= 5


def test_sobol_startup_is_seeded_and_hands_over_to_the_model() -> None:
    """The same seed proposes the same trials (a resumed study re-creates the same points); another seed other
    ones; from trial 8 on the model (TPE) proposes, and its trials close in on the optimum (coeff 0.9, lr 10^-2.5)."""
    study, a = sobol_study(0, trials=24)
    _, b = sobol_study(0, trials=24)
    _, c = sobol_study(1)
    assert a == b and a[:8] != c[:8]
    start, late = [t.value for t in study.trials[:8]], [t.value for t in study.trials[16:]]
    assert sum(late) / len(late) < 0.5 * sum(start) / len(start)


@pytest.mark.parametrize("kind", ["gp", "cmaes"])
def test_sobol_startup_works_with_every_model_sampler(kind: str) -> None:
    import importlib.util

    if kind == "cmaes" and importlib.util.find_spec("cmaes") is None:
        pytest.skip("cmaes is not installed (the driver refuses it with one line)")
    _, params = sobol_study(0, kind)
    assert eighths([p["model.coeff"] for p in params[:8]], 0.5, 0.99) == list(range(8))
    assert len(params) == 12


def test_unit_to_value_maps_quantiles_onto_each_distribution() -> None:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from nflab.tune import unit_to_value

    choices = CategoricalDistribution(["a", "b", "c"])
    assert [unit_to_value(u, choices) for u in (0.0, 0.34, 0.999)] == ["a", "b", "c"]
    stepped = IntDistribution(0, 6, step=2)
    assert [unit_to_value(u, stepped) for u in (0.0, 0.26, 0.51, 0.99)] == [0, 2, 4, 6]
    assert unit_to_value(0.5, FloatDistribution(0.0, 1.0, step=0.25)) == 0.5
    assert math.isclose(unit_to_value(0.5, FloatDistribution(1e-4, 1e-2, log=True)), 1e-3)
    assert unit_to_value(0.999, IntDistribution(1, 1000, log=True)) == 993
    assert unit_to_value(0.25, FloatDistribution(2.0, 6.0)) == 3.0
