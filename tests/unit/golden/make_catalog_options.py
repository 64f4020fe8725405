"""Write ``catalog_options.json``: the *effective* model options of every run of every catalog pipeline.

Written once with the configuration code of before "one configuration language" (shape-dependent ``None`` options,
the ``estimator`` section applied after build), so that ``tests/unit/test_catalog_golden.py`` can show the new
resolver gives every run the same options. Effective means what the builder used: a ``None`` replaced by the toy or
image default, and the pipeline's estimator section applied on top of the family's estimator options.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import nflab.flows as flows
import nflab.flows.models.ffjord as ffjord
import nflab.flows.models.lipschitz_flows as lip
from nflab.flows.data import TOY_DATASETS
from nflab.pipelines import expand, list_catalog, load_pipeline

OUT = Path(__file__).with_name("catalog_options.json")
RENAMED = {"hutchinson": "probe"}


def _captured_build(family: str, shape: tuple[int, ...], options: dict[str, Any]) -> dict[str, Any]:
    """Build the model and capture the config its builder resolved from the shape."""
    seen: dict[str, Any] = {}
    real_resolved, real_for_shape = lip.resolved, ffjord.FFJORDConfig.for_shape

    def resolved(cfg, is_image, fam):
        out = real_resolved(cfg, is_image, fam)
        seen.update({k: getattr(out, k) for k in out.__dataclass_fields__})
        return out

    def for_shape(self, shp):
        out = real_for_shape(self, shp)
        seen.update({k: getattr(out, k) for k in out.__dataclass_fields__})
        return out

    lip.resolved, ffjord.FFJORDConfig.for_shape = resolved, for_shape
    try:
        flows.build(family, shape, **options)
    finally:
        lip.resolved, ffjord.FFJORDConfig.for_shape = real_resolved, real_for_shape
    return seen


def effective(config: dict[str, Any]) -> dict[str, Any] | None:
    model = dict(config["model"])
    family = model.pop("family")
    if family is None:
        return None
    name = config["dataset"]["name"]
    shape = (2,) if name in TOY_DATASETS else {"digits": (1, 8, 8)}.get(name, (1, 28, 28))
    options = {k: v for k, v in model.items()}
    out = {**options, **_captured_build(family, shape, {k: v for k, v in options.items() if v is not None})}
    vector = len(shape) == 1
    if family == "cif":
        out["cif_hidden"] = out["cif_hidden"] or ([10, 10] if vector else [32, 32])
        out["num_importance_samples"] = out["num_importance_samples"] or (100 if vector else 10)
    estimator = {RENAMED.get(k, k): v for k, v in (config.get("estimator") or {}).items() if v is not None}
    if family == "ffjord":
        if estimator.get("kind") == "exact":
            out["divergence"] = "brute_force"
        if "probe" in estimator:
            out["noise"] = estimator["probe"]
    elif "estimator" in out:  # the Lipschitz families (also as CIF's base): the estimator section overrides
        out.update({("estimator" if k == "kind" else k): v for k, v in estimator.items()})
    return {"family": family, **json.loads(json.dumps(out))}


def main() -> None:
    golden: dict[str, list[dict[str, Any]]] = {}
    for name in list_catalog():
        runs = expand(load_pipeline(name))
        seen: set[str] = set()
        rows = []
        for run in runs:
            if run.config_hash in seen:
                continue
            seen.add(run.config_hash)
            sections = {k: v for k, v in run.config.items() if k not in ("model", "estimator")}
            rows.append({"overrides": run.overrides, "options": effective(run.config), "sections": sections})
        golden[name] = rows
        print(name, len(rows), file=sys.stderr)
    OUT.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
