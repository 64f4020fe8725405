"""What the leaderboard ranks together and what it shows: sections by kind of number and grey levels, image sets in
bits/dim, mse and certificates as metrics, budgets with filters and grouping, paired differences, literal labels.
Real SQLite store, real CLI."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from nflab.cli import app
from nflab.leaderboard import Row, leaderboard, paired_difference, render, sections
from nflab.store import Store


def _spec(key: str, config_hash: str, seed: int, config: dict[str, Any]) -> dict[str, Any]:
    return {"run_key": key, "config_hash": config_hash, "seed": seed, "repeat": 0, "config": config}


def _toy(family: str, *, steps: int = 2000, **model: Any) -> dict[str, Any]:
    return {
        "dataset": {"name": "8gaussians", "test_samples": 2000, "n_bins": None},
        "model": {"family": family, **model},
        "train": {"steps": steps},
    }


def _result(metric: str, value: float, **extra: Any) -> dict[str, Any]:
    return {"split": "test", "metric": metric, "value": value, "budget": "exact", "step": 10, "kind": "best", **extra}


def _record(
    store: Store, cid: str, key: str, config_hash: str, seed: int, config: dict, results: list[dict], preset="small"
) -> str:
    run_id = store.add_runs(cid, [_spec(key, config_hash, seed, config)])[key]
    store.record_result(run_id, {"status": "finished", "results": results, "n_params": 1234, "preset": preset})
    return run_id


@pytest.fixture
def store(tmp_path: Path):
    with Store(f"sqlite:///{tmp_path / 'nflab.db'}") as s:
        yield s


@pytest.fixture
def e7(store: Store) -> Store:
    """8gaussians: plain RealNVP (exact), zero padding recorded the old way (a joint density under budget exact, far
    below every likelihood), Gaussian padding (a bound); three paired seeds each."""
    cid = store.create_campaign("e7", "fp", "name: e7")
    plain, zero, gauss = (
        _toy("realnvp"),
        _toy("realnvp", padding=2, padding_kind="zero"),
        _toy("realnvp", padding=2, padding_kind="gaussian"),
    )
    for seed, (a, b, c) in enumerate([(2.90, -11.0, 3.10), (2.95, -10.2, 3.02), (2.88, -12.6, 3.20)]):
        _record(store, cid, f"p-{seed}", "p" * 64, seed, plain, [_result("nats", a, quantity="exact")])
        _record(store, cid, f"z-{seed}", "z" * 64, seed, zero, [_result("nats", b)])  # no quantity: derived
        _record(store, cid, f"g-{seed}", "g" * 64, seed, gauss, [_result("nats", c, budget="iwae-100")])
    return store


def test_rows_of_different_kinds_never_share_a_rank(e7: Store) -> None:
    rows = leaderboard(e7, dataset="8gaussians")
    by_hash = {r.config_hash: r for r in rows if r.source == "ours"}
    assert by_hash["z" * 64].quantity == "joint" and by_hash["g" * 64].quantity == "bound"
    assert by_hash["p" * 64].quantity == "exact"
    for members in sections(rows).values():
        assert len({r.quantity for r in members}) == 1
        assert [r.rank for r in members] == list(range(1, len(members) + 1))
    exact = next(m for m in sections(rows).values() if m[0].quantity == "exact")
    assert exact[0].label == "Monotone Flow" and exact[0].source == "paper"  # 2.840 beats our 2.91; -11 is not here
    assert {r.config_hash for r in exact if r.source == "ours"} == {"p" * 64}
    assert by_hash["z" * 64].rank == 1 and by_hash["z" * 64].section != by_hash["p" * 64].section
    console = Console(record=True, width=250)
    console.print(render(rows))
    text = console.export_text()
    assert "8gaussians — nats — exact likelihood" in text
    assert "joint density of an augmented space" in text and "lower bound" in text


def test_paired_differences_and_their_standard_error(e7: Store) -> None:
    rows = leaderboard(e7, dataset="8gaussians", include_reference=False, group_by=None)
    plain = next(r for r in rows if r.config_hash == "p" * 64)
    gauss = next(r for r in rows if r.config_hash == "g" * 64)
    diffs = [3.10 - 2.90, 3.02 - 2.95, 3.20 - 2.88]
    paired = paired_difference(gauss, plain)
    assert paired is not None and paired.n == 3 and paired.versus == plain.label
    assert paired.mean == pytest.approx(statistics.fmean(diffs), abs=1e-12)
    assert paired.se == pytest.approx(statistics.stdev(diffs) / math.sqrt(3), abs=1e-12)
    unpaired = Row(**{**gauss.__dict__, "seeds": (7, 8, 9)})
    assert paired_difference(unpaired, plain) is None
    # in the table each row is paired with the best row of ours in its section (here: alone, so the reference)
    assert plain.paired is not None and plain.paired.versus == plain.label
    versus = leaderboard(e7, dataset="8gaussians", include_reference=False, versus="realnvp")
    assert all(r.paired is not None for r in versus)


def test_budget_columns_filters_and_grouping(store: Store) -> None:
    cid = store.create_campaign("budgets", "fp", "name: budgets")
    for seed in range(2):
        _record(store, cid, f"s-{seed}", "s" * 64, seed, _toy("maf", steps=2000), [_result("nats", 3.0 + seed)])
        _record(store, cid, f"l-{seed}", "l" * 64, seed, _toy("maf", steps=50000), [_result("nats", 2.9)], "default")
    rows = leaderboard(store, dataset="8gaussians")
    small = next(r for r in rows if r.config_hash == "s" * 64)
    assert small.budget.steps == 2000 and small.budget.preset == "small" and small.budget.n_params == 1234
    assert small.budget.estimator == "exact" and small.budget.test_size == 2000
    assert small.budget.label() == "2,000 steps · small · 1.23k params · exact · test 2,000"
    paper = next(r for r in rows if r.source == "paper")
    assert paper.budget.steps == 50000 and paper.budget.test_size == 10000 and paper.selection == "last-20-mean"
    assert small.note == "train.steps=2000"  # what tells it from the other maf row here
    assert {r.config_hash for r in leaderboard(store, dataset="8gaussians", steps=2000)} == {"s" * 64}
    assert {
        r.config_hash for r in leaderboard(store, dataset="8gaussians", preset="default", include_reference=False)
    } == {"l" * 64}
    grouped = sections(leaderboard(store, dataset="8gaussians", group_by="budget"), "budget")
    assert len(grouped) == 3  # ours at 2,000 and at 50,000 steps, the papers' 50,000-step published rows
    assert all(len({(r.budget.steps, r.budget.preset) for r in m}) == 1 for m in grouped.values())


def test_image_sets_default_to_bits_per_dim(store: Store) -> None:
    cid = store.create_campaign("digits", "fp", "name: digits")
    config = {"dataset": {"name": "digits", "n_bins": 17, "test_samples": 359}, "model": {"family": "glow"}}
    _record(store, cid, "d-0", "d" * 64, 0, config, [_result("nats", -82.9), _result("bpd", 2.51)])
    (row,) = leaderboard(store, dataset="digits")
    assert row.metric == "bpd" and row.mean == 2.51 and row.levels == 17
    assert row.metric_label() == "bpd (17 levels)" and row.section == ("digits", "bpd", 17, "exact")
    result = CliRunner().invoke(app, ["leaderboard", "--dataset", "digits"], env={"NFLAB_DB_URL": store.url})
    assert result.exit_code == 0, result.output
    assert "bpd (17 levels)" in result.output and "2.5100" in result.output and "-82.9" not in result.output
    nats = leaderboard(store, dataset="digits", metric="nats")
    assert nats[0].mean == -82.9  # still there when asked for by name


def test_the_leaderboard_serves_mse_and_certificates(store: Store) -> None:
    cid = store.create_campaign("e1", "fp", "name: e1")
    fit = {"dataset": {"name": None}, "model": {"family": None}, "analysis": {"kind": "fit1d", "target": "impflowfunc",
           "variant": "scaled_monotone"}}  # fmt: skip
    for seed, mse in enumerate([0.010, 0.012]):
        _record(store, cid, f"f-{seed}", "f" * 64, seed, fit, [_result("mse", mse, budget="grid-1000")])
    e7 = store.create_campaign("e7", "fp2", "name: e7")
    for seed, cond in enumerate([120.0, 180.0]):
        _record(
            store, e7, f"c-{seed}", "c" * 64, seed, _toy("realnvp", padding=2, padding_kind="zero"),
            [_result("nats", 3.4, quantity="bound"), _result("jacobian_condition", cond, budget="probe-64")],
        )  # fmt: skip
    (mse,) = leaderboard(store, dataset="impflowfunc")  # the default metric of a fit1d target
    assert mse.metric == "mse" and mse.family == "fit1d:scaled_monotone" and mse.mean == pytest.approx(0.011)
    runner = CliRunner()
    shown = runner.invoke(app, ["leaderboard", "--metric", "mse", "--json"], env={"NFLAB_DB_URL": store.url})
    assert shown.exit_code == 0, shown.output
    assert [(r["family"], r["metric"]) for r in json.loads(shown.stdout)] == [("fit1d:scaled_monotone", "mse")]
    (padded,) = [r for r in leaderboard(store, dataset="8gaussians") if r.source == "ours"]
    assert padded.certificates == {"jacobian_condition": pytest.approx(150.0)}
    console = Console(record=True, width=250)
    console.print(render([padded]))
    text = console.export_text()
    assert "jacobian_condition" in text and "150" in text
    (cond,) = leaderboard(store, dataset="8gaussians", metric="jacobian_condition", include_reference=False)
    assert cond.mean == pytest.approx(150.0) and cond.std == pytest.approx(math.sqrt(1800.0))
    bad = runner.invoke(app, ["leaderboard", "--metric", "accuracy"], env={"NFLAB_DB_URL": store.url})
    lines = [line for line in bad.output.splitlines() if line.strip()]
    assert bad.exit_code == 2 and len(lines) == 1 and "--metric: 'accuracy'" in lines[0] and "mse" in lines[0]


def test_labels_print_literally(store: Store) -> None:
    """rich reads ``[abc]`` as markup: the label of config ``abc…`` must still print, in a table and in the CLI."""
    cid = store.create_campaign("escape", "fp", "name: escape")
    _record(store, cid, "x-0", "abc", 0, _toy("realnvp"), [_result("nats", 2.9)])
    _record(store, cid, "y-0", "efd47265" + "0" * 56, 0, _toy("realnvp", couplings=4), [_result("nats", 3.0)])
    rows = [r for r in leaderboard(store, dataset="8gaussians") if r.source == "ours"]
    assert {r.label for r in rows} == {"realnvp [abc]", "realnvp [efd47265]"}
    console = Console(record=True, width=250)  # markup on, as in any default console
    console.print(render(rows))
    text = console.export_text()
    assert "realnvp [abc]" in text and "realnvp [efd47265]" in text
    result = CliRunner().invoke(app, ["leaderboard", "--no-reference"], env={"NFLAB_DB_URL": store.url})
    assert result.exit_code == 0, result.output
    assert "realnvp [abc]" in result.output and "realnvp [efd47265]" in result.output


def test_a_rerun_seed_counts_once(e7: Store) -> None:
    """The same configuration and seed run again (another campaign): one value per seed, the newest."""
    again = e7.create_campaign("e7-again", "fp-again", "name: e7")
    _record(e7, again, "p-0b", "p" * 64, 0, _toy("realnvp"), [_result("nats", 2.91, quantity="exact")])
    plain = next(r for r in leaderboard(e7, dataset="8gaussians") if r.config_hash == "p" * 64)
    assert plain.n_seeds == 3 and plain.seeds == (0, 1, 2)
    assert plain.values == (2.91, 2.95, 2.88) and plain.campaigns == ("e7", "e7-again")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--select", "median"], "--select: 'median' is not one of: best, mean, final"),
        (["--group-by", "seed"], "--group-by: 'seed' is not one of: budget"),
    ],
)
def test_bad_leaderboard_options_are_one_line_errors(store: Store, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["leaderboard", *args], env={"NFLAB_DB_URL": store.url})
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and lines == [f"error: {message}"]
