"""The repro verdict rules on synthetic numbers: exact tier to the last digit, statistical tier (k·max(σ, floor) and
Welch's t-test with ≥ 3 seeds each side), env-changed, failed, and the leaderboard badge."""

from __future__ import annotations

import copy
import statistics
from typing import Any

import pytest

from nflab import repro

ENV = {"torch": "2.13.0+cpu", "numpy": "2.4.6", "cpu": "AMD EPYC"}


def _entry(seed: int, nats: float, *, device: str = "cpu", sha: str = "a" * 64, status: str = "finished") -> dict:
    return {"run_key": f"k-r{seed}", "config_hash": "c" * 64, "family": "realnvp", "seed": seed, "status": status,
            "error": None if status == "finished" else "non-finite loss (nan) at step 3",
            "metrics": {"best nats": nats, "final nats": nats + 0.01}, "best_sha256": sha, "data_digest": "d" * 64,
            "device": device}  # fmt: skip


def _pin(values: list[float], **kw: Any) -> dict[str, Any]:
    return {"environment": dict(ENV), "reference": [_entry(i, v, **kw) for i, v in enumerate(values)]}


REF = [2.40, 2.42, 2.44]


def test_exact_tier_identical_is_reproduced() -> None:
    pin = _pin(REF)
    verdict = repro.judge(pin, copy.deepcopy(pin["reference"]), ENV)
    assert verdict.status == "reproduced" and verdict.details["tier"] == "exact"


def test_exact_tier_shows_a_difference_to_the_last_digit() -> None:
    pin = _pin(REF)
    observed = copy.deepcopy(pin["reference"])
    observed[1]["metrics"]["best nats"] = 2.4200000000000004
    observed[2]["best_sha256"] = "b" * 64
    verdict = repro.judge(pin, observed, ENV)
    assert verdict.status == "drift"
    assert "k-r1 best nats: 2.42 → 2.4200000000000004" in verdict.reason and "best sha256" in verdict.reason


def test_statistical_tier_within_k_sigma_is_reproduced_and_out_of_it_is_drift() -> None:
    pin = _pin(REF, device="gpu")  # GPU: never the exact tier
    close = [_entry(i, v + 0.005, device="gpu") for i, v in enumerate(REF)]
    ok = repro.judge(pin, close, ENV)
    assert ok.status == "reproduced" and ok.details["tier"] == "statistical"
    far = [_entry(i, v + 0.12, device="gpu") for i, v in enumerate(REF)]
    bad = repro.judge(pin, far, ENV)
    sd = statistics.stdev(REF)
    assert bad.status == "drift"
    assert f"reference {statistics.fmean(REF):.4f} ± {sd:.4f} (3 seeds)" in bad.reason
    assert "Δ +0.1200 (+6.0σ" in bad.reason and "Welch p=" in bad.reason
    assert repro.badge({"status": "drift", "details": bad.details, "created_at": "2026-12-01T03:00:00"}) == (
        "✘ drift +0.12 nats (6.0σ) 2026-12-01"
    )


def test_welch_test_rejects_a_consistent_shift_inside_k_sigma() -> None:
    """Reference spread 0.02 → tolerance 0.06; a shift of 0.05 with almost no spread passes k·σ but not Welch."""
    pin = _pin(REF, device="gpu")
    shifted = [_entry(i, 2.47 + 0.0001 * i, device="gpu") for i in range(3)]
    verdict = repro.judge(pin, shifted, ENV)
    row = next(r for r in verdict.details["comparisons"] if r["metric"] == "best nats")
    assert abs(row["delta"]) <= 3 * row["reference_sd"] and row["welch_p"] < 0.05
    assert verdict.status == "drift"
    two = _pin(REF[:2], device="gpu")  # two seeds: no test, k·σ only
    assert repro.judge(two, [_entry(i, 2.45, device="gpu") for i in range(2)], ENV).status == "reproduced"


def test_floor_bounds_sigma_for_a_single_seed() -> None:
    pin = _pin([2.40], device="gpu")
    assert repro.judge(pin, [_entry(0, 2.425, device="gpu")], ENV, floor=0.01).status == "reproduced"
    assert repro.judge(pin, [_entry(0, 2.435, device="gpu")], ENV, floor=0.01).status == "drift"


def test_changed_environment_is_env_changed_unless_the_numbers_drift() -> None:
    pin = _pin(REF)
    newer = {**ENV, "torch": "2.14.0+cpu"}
    same = repro.judge(pin, copy.deepcopy(pin["reference"]), newer)
    assert same.status == "env-changed" and "torch: 2.13.0+cpu → 2.14.0+cpu" in same.reason
    assert same.details["tier"] == "statistical"
    far = [_entry(i, v + 0.5) for i, v in enumerate(REF)]
    drift = repro.judge(pin, far, newer)
    assert drift.status == "drift" and "environment changed: torch" in drift.reason


def test_a_failed_run_is_failed_with_its_reason() -> None:
    pin = _pin(REF)
    observed = copy.deepcopy(pin["reference"])
    observed[0] = _entry(0, float("nan"), status="failed")
    verdict = repro.judge(pin, observed, ENV)
    assert verdict.status == "failed" and verdict.reason == "run k-r0 (seed 0) failed: non-finite loss (nan) at step 3"


@pytest.mark.parametrize(
    ("a", "b", "expected"), [([1.0, 1.0, 1.0], [1.0, 1.0, 1.0], 1.0), ([1.0, 1.0, 1.0], [2.0, 2.0, 2.0], 0.0)]
)
def test_welch_p_of_constant_samples(a: list[float], b: list[float], expected: float) -> None:
    assert repro.welch_p(a, b) == expected


def test_badges() -> None:
    when = "2026-12-01T03:00:00+00:00"
    assert repro.badge(None) == "pinned, not yet checked"
    assert repro.badge({"status": "reproduced", "created_at": when}) == "✔ reproduced 2026-12-01"
    assert repro.badge({"status": "env-changed", "created_at": when}) == "≈ env-changed 2026-12-01"
    assert repro.badge({"status": "failed", "created_at": when}) == "✘ failed 2026-12-01"
