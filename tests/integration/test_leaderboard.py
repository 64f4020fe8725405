"""The leaderboard over a real SQLite store: mean ± std over seeds per config_hash, sections by kind of number,
budgets, paired differences, default metrics, certificates, paper rows, JSON, rich and a self-contained HTML page."""

from __future__ import annotations

import base64
import json
import math
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from nflab.leaderboard import leaderboard, render, render_table, sections, to_json, write_html
from nflab.reference_results import REFERENCES
from nflab.store import Store

# (family, config_hash) -> nats per seed; two configs of one family must stay apart
VALUES: dict[tuple[str, str], list[float]] = {
    ("monotone", "a" * 64): [3.61, 3.58, 3.66],
    ("resflow", "b" * 64): [3.70, 3.74, 3.69],
    ("resflow", "c" * 64): [3.52, 3.57, 3.55],
    ("realnvp", "d" * 64): [3.80],
}


def _spec(family: str, config_hash: str, seed: int, dataset: str = "checkerboard") -> dict[str, Any]:
    return {
        "run_key": f"{config_hash[:12]}-r{seed}",
        "config_hash": config_hash,
        "seed": seed,
        "repeat": seed,
        "config": {"dataset": {"name": dataset}, "model": {"family": family}},
    }


def _nats(value: float, budget: str = "exact", kind: str = "best") -> dict[str, Any]:
    return {"split": "test", "metric": "nats", "value": value, "budget": budget, "step": 500, "kind": kind}


@pytest.fixture
def store(tmp_path: Path):
    with Store(f"sqlite:///{tmp_path / 'nflab.db'}") as s:
        cid = s.create_campaign("toy-e2", "fp", "name: toy-e2")
        for (family, h), values in VALUES.items():
            ids = s.add_runs(cid, [_spec(family, h, seed) for seed in range(len(values))])
            for seed, v in enumerate(values):
                # every run also has a worse estimated value and a "final" one: neither may leak into the mean
                results = [_nats(v), _nats(v + 1.0, budget="roulette-20"), _nats(v + 2.0, kind="final")]
                s.record_result(ids[f"{h[:12]}-r{seed}"], {"status": "finished", "results": results})
        # not finished: excluded
        extra = s.add_runs(cid, [_spec("monotone", "a" * 64, 7), _spec("monotone", "a" * 64, 8)])
        s.record_result(extra[f"{'a' * 12}-r7"], {"status": "failed", "error": "nan", "results": [_nats(0.1)]})
        s.mark_running(extra[f"{'a' * 12}-r8"])
        # another dataset, another campaign
        other = s.create_campaign("moons-run", "fp2", "name: moons-run")
        mid = s.add_runs(other, [_spec("monotone", "e" * 64, 0, dataset="moons")])
        s.record_result(mid[f"{'e' * 12}-r0"], {"status": "finished", "results": [_nats(2.45)]})
        yield s


def _expected(values: list[float]) -> tuple[float, float | None]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return mean, std


def test_mean_std_per_config_hash(store: Store) -> None:
    rows = leaderboard(store, dataset="checkerboard", include_reference=False, estimator="exact")
    assert len(rows) == len(VALUES)
    by_hash = {r.config_hash: r for r in rows}
    for (family, h), values in VALUES.items():
        row = by_hash[h]
        mean, std = _expected(values)
        assert row.family == family and row.source == "ours"
        assert row.n_seeds == len(values)
        assert row.mean == pytest.approx(mean, abs=1e-12)
        if std is None:
            assert row.std is None
        else:
            assert row.std == pytest.approx(std, abs=1e-12)
        assert row.best == min(values)
        assert row.campaigns == ("toy-e2",)
        assert row.budgets == ("exact",) and row.budget.estimator == "exact" and row.quantity == "exact"
    means = [r.mean for r in rows]
    assert means == sorted(means)
    assert rows[0].config_hash == "c" * 64  # resflow config c is the best one


def test_reference_rows_sit_among_ours(store: Store) -> None:
    rows = leaderboard(store, dataset="checkerboard")
    paper = [r for r in rows if r.source == "paper"]
    assert {(r.label, r.mean) for r in paper} == {("i-DenseNet", 3.609), ("Monotone Flow", 3.540)}
    assert all(r.citation and "Monotone" in r.citation for r in paper)
    means = [r.mean for r in rows]
    assert means == sorted(means)
    labels = [r.label for r in rows]
    assert labels.index("Monotone Flow") < labels.index("i-DenseNet")


def test_all_datasets_and_other_metrics(store: Store) -> None:
    rows = leaderboard(store)
    datasets = [r.dataset for r in rows]
    assert datasets == sorted(datasets)
    moons = [r for r in rows if r.dataset == "moons" and r.source == "ours"]
    assert len(moons) == 1 and moons[0].campaigns == ("moons-run",) and moons[0].std is None
    assert sum(r.source == "paper" and r.metric == "nats" for r in rows) == 16  # Table 1: 8 datasets x 2 models
    assert {r.metric for r in rows if r.dataset in ("mnist", "cifar10")} == {"bpd"}  # image sets: bits/dim
    final = leaderboard(store, dataset="checkerboard", kind="final", include_reference=False, estimator="exact")
    assert final[0].mean == pytest.approx(_expected(VALUES["resflow", "c" * 64])[0] + 2.0)
    bpd = leaderboard(store, metric="bpd", dataset="cifar10")
    assert {r.source for r in bpd} == {"paper"}
    assert ("Monotone Flow", 3.215) in {(r.label, r.mean) for r in bpd}
    for members in sections(bpd).values():  # ranked within each kind of number
        assert [r.rank for r in members] == list(range(1, len(members) + 1))
        assert [r.mean for r in members] == sorted(r.mean for r in members)
    kinds = {r.label: r.quantity for r in bpd}
    assert kinds["Glow"] == "exact" and kinds["Monotone Flow"] == "unbiased" and kinds["CIF-ResFlow"] == "bound"


def test_reference_table_covers_the_seed_experiments() -> None:
    e3 = {(r.dataset, r.model): r.value for r in REFERENCES if r.metric == "bpd"}
    assert e3[("mnist", "Monotone Flow")] == 0.928
    assert e3[("imagenet64", "Glow")] == 3.81
    assert e3[("cifar10", "CIF-ResFlow")] == 3.334
    assert ("mnist", "i-DenseNet") not in e3
    from nflab.flows.data import TOY_DATASETS

    assert {r.dataset for r in REFERENCES if r.metric == "nats"} == set(TOY_DATASETS) - {"2gaussians"}  # E2's eight


def test_json_output(store: Store) -> None:
    data = to_json(leaderboard(store, dataset="checkerboard"))
    text = json.dumps(data)
    assert json.loads(text) == data
    ours = next(d for d in data if d["source"] == "ours" and d["config_hash"] == "a" * 64)
    mean, std = _expected(VALUES["monotone", "a" * 64])
    assert ours["mean"] == pytest.approx(mean) and ours["std"] == pytest.approx(std)
    assert ours["n_seeds"] == 3 and len(ours["run_ids"]) == 3 and ours["campaigns"] == ["toy-e2"]


def test_rich_table(store: Store) -> None:
    rows = leaderboard(store, dataset="checkerboard", estimator="exact") + [
        r for r in leaderboard(store, dataset="checkerboard") if r.source == "paper"
    ]
    table = render_table(rows)
    assert table.row_count == len(rows)
    console = Console(record=True, width=250)
    console.print(render(leaderboard(store, dataset="checkerboard")))
    out = console.export_text()
    mean, std = _expected(VALUES["monotone", "a" * 64])
    assert f"{mean:.4f} ± {std:.4f}" in out
    assert "paper" in out and "3.5400" in out


def _png(width: int = 2, height: int = 2) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_html_page_is_self_contained(store: Store, tmp_path: Path) -> None:
    png = tmp_path / "density.png"
    png.write_bytes(_png())
    stray = tmp_path / "stray.png"
    stray.write_bytes(_png(3, 1))
    rows = leaderboard(store)
    monotone = next(r for r in rows if r.config_hash == "a" * 64)
    out = write_html(rows, tmp_path / "out" / "board.html", images={monotone.label: str(png), "extra": str(stray)})
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>")
    mean, std = _expected(VALUES["monotone", "a" * 64])
    assert f"{mean:.4f} ± {std:.4f}" in page
    assert "3.5400" in page and "3.6090" in page
    assert 'class="paper"' in page and ">paper<" in page
    assert "<h2>checkerboard</h2>" in page and "<h2>moons</h2>" in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert [base64.b64decode(x) for x in images] == [png.read_bytes(), stray.read_bytes()]
    assert "<style>" in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "<script" not in page
