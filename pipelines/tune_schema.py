"""The ``tune:`` section of a pipeline: what a study optimises, over which space, with which sampler and pruner.

The section is validated like every other one (unknown keys are errors, values are strict); its search space is
checked against the family's declarations by :func:`nflab.pipelines.tune_space.search_space` when the pipeline is
loaded, so a bad space is one line before anything is written.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SAMPLERS = ("tpe", "random", "cmaes", "gp", "nsga2", "grid")
PRUNERS = ("median", "hyperband", "successive_halving", "none")
#: the second objectives a study may add (each minimised): a Pareto front against the main one
SECOND_OBJECTIVES = ("seconds_per_step",)
#: run certificates that may bound a trial (``inversion_error <= 1e-3``): a trial outside is infeasible
CERTIFICATES = ("inversion_error", "logdet_gap", "jacobian_norm", "jacobian_condition")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True, allow_inf_nan=False)


class ObjectiveSpec(_Section):
    """The number a trial is judged by: the run's best evaluated validation ``metric`` (the one that selects its
    checkpoint), reported at every evaluation for pruning."""

    metric: Literal["nats", "bpd"] = "nats"
    direction: Literal["minimize", "maximize"] = "minimize"


#: the samplers that start with random trials before their model takes over (Optuna's ``n_startup_trials``)
MODEL_SAMPLERS = ("tpe", "cmaes", "gp")


#: how a model-based sampler draws its start-up trials
STARTUPS = ("random", "sobol")


class SamplerSpec(_Section):
    """Optuna sampler ``kind``, seeded in the driver (reproducible with ``parallel: 1``); ``startup_trials``: the
    trials a model-based sampler (tpe, cmaes, gp) draws before its model proposes (None: Optuna's default, 10 for
    TPE — a study of fewer trials than that is a random search); ``startup``: how they are drawn — ``random``
    (Optuna's own) or ``sobol``, a seeded Owen-scrambled Sobol sequence that stratifies every parameter's range
    (one point in each 1/n of it for n start-up trials, n a power of 2), so no range is left unexplored by luck."""

    kind: Literal[SAMPLERS] = "tpe"  # type: ignore[valid-type]
    seed: Annotated[int, Field(ge=0, lt=2**32)] | None = 0
    startup_trials: Annotated[int, Field(ge=1, le=10**6)] | None = None
    startup: Literal[STARTUPS] = "random"  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _startup_needs_a_model(self) -> SamplerSpec:
        for option in ("startup_trials", "startup"):
            if option in self.model_fields_set and self.kind not in MODEL_SAMPLERS:
                raise ValueError(f"{option} applies to the samplers {', '.join(MODEL_SAMPLERS)}, not {self.kind!r}")
        return self


#: the pruners that promote a fraction of the trials from rung to rung (``reduction_factor``)
RUNG_PRUNERS = ("hyperband", "successive_halving")


class PrunerSpec(_Section):
    """Optuna pruner ``kind``; ``startup_trials``: trials run to the end before the median pruner prunes;
    ``warmup_steps``: evaluations before this training step never prune (every pruner: the median pruner's warm-up,
    the first rung of Hyperband and successive halving); ``reduction_factor`` η: Hyperband and successive halving
    promote the best 1/η of a rung's trials to the next rung, η times further (Li et al. 2018)."""

    kind: Literal[PRUNERS] = "median"  # type: ignore[valid-type]
    startup_trials: Annotated[int, Field(ge=0, le=10**6)] = 2
    warmup_steps: Annotated[int, Field(ge=0, le=10**9)] = 0
    reduction_factor: Annotated[int, Field(ge=2, le=10)] = 3

    @model_validator(mode="after")
    def _reduction_needs_rungs(self) -> PrunerSpec:
        if "reduction_factor" in self.model_fields_set and self.kind not in RUNG_PRUNERS:
            raise ValueError(f"reduction_factor applies to the pruners {', '.join(RUNG_PRUNERS)}, not {self.kind!r}")
        return self


class RangeSpec(_Section):
    """One explicit dimension: numbers in ``[low, high]`` (``log``: log-uniform) or a list of ``choices``."""

    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    choices: Annotated[list[int | float | str | bool], Field(min_length=1)] | None = None


SpaceName = Literal["lipschitz", "estimator", "activation", "architecture", "solver", "optimizer", "all"]


class TuneSpec(_Section):
    """A study: ``trials`` runs of the pipeline's one configuration, each with values drawn from ``space`` (a named
    space of the family's declared tunable options, a list of them, or explicit dotted paths), ``parallel`` at a
    time; ``also`` adds objectives (multi-objective: a Pareto front; pruning then does not apply);
    ``constraints`` bounds run certificates (a trial outside them is infeasible and never best)."""

    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec)
    also: list[Literal[SECOND_OBJECTIVES]] = Field(default_factory=list)  # type: ignore[valid-type]
    space: SpaceName | Annotated[list[SpaceName], Field(min_length=1)] | dict[str, RangeSpec] = "all"
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    constraints: dict[Literal[CERTIFICATES], Annotated[float, Field(ge=0)]] = Field(  # type: ignore[valid-type]
        default_factory=dict
    )
    trials: Annotated[int, Field(gt=0, le=100_000)] = 20
    parallel: Annotated[int, Field(gt=0, le=1024)] = 1
