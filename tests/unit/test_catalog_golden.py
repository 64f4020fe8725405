"""Every catalog pipeline resolves to the same effective model options (and sections) as before the one configuration
language, whose golden file ``golden/catalog_options.json`` was written by the previous code
(``golden/make_catalog_options.py``, kept at commit 8250d45): the shape-dependent ``None`` placeholders, FFJORD's
``SHAPE_DEFAULTS``, CIF's inline constants and the runtime estimator hook all had to give these values.

The differences are deliberate and listed here (and in the closing note of the issue):
- ``padding_std`` / ``padding_samples`` were ``null`` (chosen when the flow was built) and are now resolved for the
  kind of data (1.0 and 100 for vectors) — the same effective values;
- FFJORD's ``divergence`` (brute_force | hutchinson) is now ``estimator`` (exact | hutchinson) and its ``noise`` is
  ``probe``: one name per idea across families;
- the Lipschitz families list only their branch's options (no ``dense_*`` on MLP-branch families, no ``hidden`` /
  ``channels`` / ``kernels`` / ``fc_hidden`` on dense-branch ones) and gain ``n_probes`` (before: estimator
  section only);
- the ``estimator`` section is gone from the resolved config (merged into the model's options);
- an E1 regression is a run kind of its own: ``{kind: fit1d, fit1d, train, resources}`` instead of an analysis of
  kind ``fit1d`` with null ``dataset`` and ``model`` sections and an unused ``eval`` section.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nflab.pipelines import expand, list_catalog, load_pipeline
from nflab.pipelines.hashing import canonical_json

GOLDEN = json.loads((Path(__file__).parent / "golden" / "catalog_options.json").read_text())
RENAMED = {"ffjord": {"divergence": "estimator", "noise": "probe"}}
RENAMED_VALUES = {("ffjord", "estimator"): {"brute_force": "exact", "hutchinson": "hutchinson"}}
NEW_OPTIONS = {"n_probes"}
RESOLVED_NOW = {"padding_std": {None: 1.0}, "padding_samples": {None: 100}}
# tuned pipelines, the E3 image pipelines, E6 and the FFJORD-vs-Glow comparison came later
LATER = ("tune-", "e3-", "e6-", "ffjord-glow")
CAMPAIGNS = [name for name in list_catalog() if not name.startswith(LATER)]


def _key(overrides: dict[str, Any]) -> str:
    renamed = {k.replace("analysis.", "fit1d.", 1): v for k, v in overrides.items()}  # E1: a run kind of its own
    return canonical_json({k: v for k, v in renamed.items() if k != "train.seed"})


def _before(options: dict[str, Any]) -> dict[str, Any]:
    family = options["family"]
    out = {}
    for key, value in options.items():
        name = RENAMED.get(family, {}).get(key, key)
        if isinstance(value, str):
            value = RENAMED_VALUES.get((family, name), {}).get(value, value)
        out[name] = RESOLVED_NOW.get(name, {}).get(value, value) if value is None else value
    return out


def test_the_golden_file_covers_every_catalog_pipeline() -> None:
    assert sorted(GOLDEN) == CAMPAIGNS


@pytest.mark.parametrize("name", CAMPAIGNS)
def test_catalog_pipeline_resolves_to_the_same_effective_options(name: str) -> None:
    runs = expand(load_pipeline(name))
    now: dict[str, dict[str, Any]] = {}
    for run in runs:
        now.setdefault(_key(run.overrides), run.config)
    golden = {_key(row["overrides"]): row for row in GOLDEN[name]}
    assert set(now) == set(golden)
    for key, row in golden.items():
        config = now[key]
        if row["options"] is None:  # a fit1d run: then an analysis with null dataset and model, now its own kind
            analysis = {k: v for k, v in row["sections"]["analysis"].items() if k != "kind"}
            assert config == {"kind": "fit1d", "fit1d": analysis, "train": row["sections"]["train"],
                              "resources": row["sections"]["resources"]}  # fmt: skip
            continue
        assert {k: v for k, v in config.items() if k != "model"} == row["sections"], key
        before, after = _before(row["options"]), config["model"]
        assert set(after) - set(before) <= NEW_OPTIONS, key
        changed = {k: (before[k], after[k]) for k in after if k in before and before[k] != after[k]}
        assert changed == {}, (key, changed)
