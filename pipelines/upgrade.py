"""Run configs resolved by an earlier version, resolved again by this one (the store's migration 0005 uses it).

Before "one configuration language" a resolved config held ``None`` for options whose default depended on the
kind of data, every option of the shared Lipschitz config (``dense_growth`` on Residual Flows), FFJORD's
``divergence`` (``brute_force`` | ``hutchinson``) and ``noise``, and a separate ``estimator`` section that the worker
applied on top of the built model (its ``hutchinson`` key is now ``probe``), and an E1 regression was an
``analysis`` of kind ``fit1d`` with null ``dataset`` and ``model`` sections (now a run kind of its own).
:func:`upgrade_config` turns such a config back into what a user could have written — the options that were set,
under their current names, the section winning over the model as it did at run time — and resolves that, so the
upgraded config and its hash are exactly what this version gives the same run.
"""

from __future__ import annotations

import copy
from typing import Any

import nflab.flows as flows

from .resolve import resolve_run
from .schema import ESTIMATOR_OPTION

_RENAMED = {"ffjord": {"divergence": "estimator", "noise": "probe"}}
# options every Lipschitz family listed before, although only one branch used them: dropped where unused
_BRANCH_OPTIONS = {
    "hidden", "channels", "kernels", "fc_hidden", "dense_depth", "dense_growth", "fc_dense_growth", "lip_coeff",
    "learnable_concat", "start_learnable_concat",
}  # fmt: skip
_RENAMED_VALUES = {("ffjord", "estimator"): {"brute_force": "exact"}}


def upgrade_config(old: dict[str, Any]) -> dict[str, Any]:
    """The config this version resolves for the run ``old`` describes; raises ``Invalid`` if it no longer can."""
    raw = copy.deepcopy(old)
    section = {("probe" if k == "hutchinson" else k): v for k, v in (raw.pop("estimator", None) or {}).items()}
    section = {k: v for k, v in section.items() if v is not None}
    analysis = raw.get("analysis") or {}
    if analysis.get("kind") == "fit1d":  # now a run kind of its own: the analysis options are its fit1d section
        fit1d = {k: v for k, v in analysis.items() if k != "kind"}
        return resolve_run({"fit1d": fit1d, "train": raw["train"], "resources": raw["resources"]})
    model = dict(raw.get("model") or {})
    family = model.get("family")
    renamed = _RENAMED.get(family, {})
    model = {renamed.get(k, k): v for k, v in model.items()}
    for key, values in _RENAMED_VALUES.items():
        if key[0] == family and model.get(key[1]) in values:
            model[key[1]] = values[model[key[1]]]
    fam = flows.registry.family(family)
    known = flows.options(family, base=(model.get("base") or fam.default_base) if fam.wraps_base else None)
    lipschitz = "coeff" in known
    unused = _BRANCH_OPTIONS - set(known) if lipschitz else set()
    model = {k: v for k, v in model.items() if v is not None and k not in unused}
    for key, value in section.items():  # the section overrode the built model at run time: it wins here too
        name = ESTIMATOR_OPTION.get(key, key)
        if name in known:
            model[name] = value
    raw["model"] = model
    return resolve_run(raw)
