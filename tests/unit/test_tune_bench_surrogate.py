"""Keeps the tuning benchmark's replay and surrogate honest: the simulated driver spends what the trials ran, a pruner
stops a trial that is clearly behind at its rung, and the surrogate with ``k = 1`` answers the measured curves (so
random search on it is the replay). Real Optuna samplers and pruners, the kept journals; no timing."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import tune_bench  # noqa: E402
from tune_bench import Curve, Landscape, _PoolDraw, _simulate, full_curves  # noqa: E402

JOURNALS = sorted((BENCH / "data" / "tune").glob("*.journal"))
optuna.logging.set_verbosity(optuna.logging.ERROR)


def _curve(final: float, feasible: bool = True) -> Curve:
    return Curve({}, [(100 * i, final + 1.0 / i) for i in range(1, 11)], final + 0.1, feasible)


def test_without_a_pruner_every_trial_runs_to_the_end_and_the_best_is_feasible() -> None:
    pool = [_curve(4.0), _curve(3.0, feasible=False), _curve(3.5), _curve(5.0)]
    best, spent = _simulate(optuna.create_study(pruner=optuna.pruners.NopPruner()), _PoolDraw(pool, [0, 1, 2, 3]), 4, 2)
    assert spent == 4 * 1000
    assert best == pytest.approx(3.6)  # 3.1 is infeasible: never best


def test_successive_halving_stops_a_trial_behind_at_its_first_rung() -> None:
    pool = [_curve(3.0), _curve(3.1), _curve(6.0)]
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=200, reduction_factor=3)
    best, spent = _simulate(optuna.create_study(study_name="t", pruner=pruner), _PoolDraw(pool, [0, 1, 2]), 3, 1)
    # the first trial is best so far at every rung; the second is not (2 of 3 behind) and the third is far behind
    assert best == pytest.approx(3.1)
    assert spent == 1000 + 200 + 200


def test_the_surrogate_with_one_neighbour_answers_the_measured_curves() -> None:
    from nflab.settings import load_settings
    from nflab.tune import distributions, prepare_study

    pool = full_curves(JOURNALS)
    assert len(pool) >= 40
    assert len({tuple(sorted(c.params.items())) for c in pool}) == len(pool)  # once per configuration
    dists = distributions(prepare_study(tune_bench.CATALOG, [], load_settings()).dims)
    land = Landscape(pool, dists, k=1)
    assert all(land.curve(c.params) == c for c in pool)
    # a configuration never measured (the pool's random study was seeded 0) gets its nearest measured trial's curve
    # with k = 1, a blend of its neighbours' with k = 3
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=12345)).ask(dists)
    assert land(trial).points in [c.points for c in pool]
    blended = Landscape(pool, dists, k=3)(trial)
    assert blended.points not in [c.points for c in pool]
    finals = sorted(c.value for c in pool)
    assert finals[0] <= blended.value <= finals[-1]
    assert [s for s, _ in blended.points] == [s for s, _ in pool[0].points]


def test_the_unit_cube_puts_log_ranges_on_their_log_and_different_choices_one_apart() -> None:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    dists = {"lr": FloatDistribution(1e-4, 1e-2, log=True), "act": CategoricalDistribution(["a", "b", "c"])}
    land = Landscape([], dists, k=1)
    assert land._unit({"lr": 1e-3, "act": "a"})[0] == pytest.approx(0.5)
    for x, y in (("a", "b"), ("a", "c"), ("b", "c")):
        d = (
            sum((p - q) ** 2 for p, q in zip(land._unit({"lr": 1e-3, "act": x}), land._unit({"lr": 1e-3, "act": y})))
            ** 0.5
        )
        assert d == pytest.approx(1.0)


@pytest.mark.parametrize("table", ["REPLAYED", "SURROGATE"])
def test_every_benchmarked_setting_and_the_baseline_prepare_against_the_catalog_study(table: str) -> None:
    """The settings are overrides of the catalog study; the catalog's own pruner options must not leak into a row
    (a random baseline inheriting ``reduction_factor`` is refused, a row inheriting η measures another pruner)."""
    from nflab.settings import load_settings
    from nflab.tune import make_pruner, prepare_study

    settings = load_settings()
    baseline = prepare_study(tune_bench.CATALOG, tune_bench.RANDOM_SEARCH, settings)
    assert (baseline.tune.sampler.kind, baseline.tune.pruner.kind) == ("random", "none")
    for label, extra in getattr(tune_bench, table).items():
        prep = prepare_study(tune_bench.CATALOG, extra, settings)
        if ", η " in label:
            assert prep.tune.pruner.reduction_factor == int(label.rsplit("η ", 1)[1]), label
        assert (
            f"first rung {prep.tune.pruner.warmup_steps}" in label
            or f"halving {prep.tune.pruner.warmup_steps}," in label
        )
        assert make_pruner(prep) is not None


def test_a_simulated_study_without_a_complete_trial_is_counted_not_averaged() -> None:
    summary = tune_bench._summary([(float("inf"), 400), (3.5, 1000), (3.7, 600)], budget=1000)
    assert summary["without_best"] == 1
    assert summary["best_nats_mean"] == pytest.approx(3.6)  # over the two studies with a best
    assert summary["steps_share"] == pytest.approx(2000 / 3000)  # every study spent its steps
    assert summary["first"][0] == (float("inf"), 0.4)


def test_expected_best_is_the_mean_minimum_over_every_draw() -> None:
    """The exact expectation against enumerating every draw of k values without replacement."""
    import itertools
    import random
    import statistics

    rng = random.Random(3)
    values = [rng.gauss(4.0, 0.2) for _ in range(11)]
    for k in (1, 3, 6, 11):
        brute = statistics.fmean(min(c) for c in itertools.combinations(values, k))
        assert tune_bench.expected_best(values, k) == pytest.approx(brute, rel=1e-12)


def test_the_verdict_reads_the_kept_studies() -> None:
    """``--judge`` on the kept journals: the random pool's exact expectation lies between its best and its mean, and
    each judged study's best and steps come from its trials."""
    random_pool = [BENCH / "data" / "tune" / "random-40-trials.journal"]
    studies = sorted((BENCH / "data" / "tune").glob("tpe8-halving-125-eta4-seed*.journal"))
    verdict = tune_bench.judge(random_pool, studies, 16, 1000)
    values = [c.value for c in full_curves(random_pool)]
    assert min(values) < verdict["random_expected_best"] < sum(values) / len(values)
    assert verdict["random_expected_best_by_trials"][8] > verdict["random_expected_best"]
    assert len(verdict["studies"]) == len(studies) and verdict["without_best"] == 0
    assert all(0 < share <= 100 for _, share in verdict["studies"])
    behind = verdict["best_mean"] - verdict["random_expected_best"]
    assert verdict["behind_random_by"] == pytest.approx(behind, abs=2e-4)


def test_kept_studies_leave_infeasible_trials_out_of_the_best(tmp_path: Path) -> None:
    """A complete trial that broke its constraint (set as nflab's driver sets it) is never a study's best."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = tmp_path / "s.journal"
    study = optuna.create_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(journal))))
    for value, violation, steps in ((3.0, 0.5, 1000), (3.5, -0.1, 1000), (5.0, -0.1, 200)):
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        for step in range(100, steps + 1, 100):
            trial.report(value + 1.0 / step, step)
        trial.set_constraint("inversion_error", violation)
        study.tell(trial, value)
    assert tune_bench.study_outcomes([journal]) == [(3.5, 2200, 3)]
    assert [c.feasible for c in full_curves([journal])] == [False, True]
