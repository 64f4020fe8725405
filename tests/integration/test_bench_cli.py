"""``nflab bench e5``: the running-time breakdown on this machine, at a tiny size, writes its JSON and bar chart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nflab.cli import app
from nflab.flows.analysis.runtime import E5_VARIANTS, has_breakdown


def test_bench_e5_writes_json_and_png(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NFLAB_HOME", str(tmp_path / "home"))
    out = tmp_path / "e5"
    args = ["bench", "e5", "--families", "resflow,glow", "--blocks", "1", "--batch", "16", "--rounds", "1"]
    args += ["--per-round", "1", "--warmup", "0", "--threads", "1", "--out", str(out)]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "e5.json").read_text())
    rows = {row["family"]: row for row in report["rows"]}
    assert set(rows["resflow"]["variants"]) == set(E5_VARIANTS) and rows["resflow"]["blocks"] == 1
    assert set(rows["glow"]["variants"]) == {"+log-det"}  # no spectral normalisation, no series log-det
    assert rows["resflow"]["variants"]["plain"]["ratio_to_plain"] == 1.0
    assert all(v["wall_ms"] > 0 for row in rows.values() for v in row["variants"].values())
    assert (out / "e5.png").stat().st_size > 5_000
    bad = CliRunner().invoke(app, ["bench", "e5", "--families", "nope", "--out", str(out)])
    assert bad.exit_code == 2 and "'nope' is not one of" in bad.output


def test_every_lipschitz_family_has_the_breakdown() -> None:
    assert all(has_breakdown(f) for f in ("iresnet", "resflow", "idensenet", "monotone", "implicit"))
    assert not any(has_breakdown(f) for f in ("realnvp", "glow", "nice", "maf", "ffjord", "cif"))
