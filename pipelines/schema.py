"""The pipeline schema: pydantic models for the YAML and for one expanded run.

Every section forbids unknown keys and is strict (YAML already types its scalars: ``"5"`` is not an
integer here, but ``5`` is a valid number). ``1e-3`` reads as a float (see ``yaml_lines``).

Fields that depend on the dataset are *derived* when a run is expanded: ``dataset.n_bins`` (17 for
``digits``, 256 for the other image sets, null for toy sets), ``dataset.validation_samples`` (toy sets: as many
as ``test_samples``), ``eval.best_metric`` (nats for toy sets, bpd for images) and ``eval.average_last`` (20 for
toy sets, 0 for images). ``dataset.name`` and ``model.family`` may be left out when a matrix axis supplies them.

The optional ``analysis`` section adds a study to a run (see :class:`AnalysisSpec`); a run's resolved config
lists it only when its kind is not ``none``. A pipeline with a ``fit1d`` section is a campaign of E1 regressions, a
run kind of its own (see :class:`Fit1dSpec`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)

from nflab.flows.analysis.fit1d import BRANCHES, FIT1D_VARIANTS
from nflab.flows.data import IMAGE_DATASETS, ONED_TARGETS, TOY_DATASETS
from nflab.flows.layers.activations import ACTIVATIONS

from .tune_schema import TuneSpec

DATASETS: tuple[str, ...] = (*TOY_DATASETS, *IMAGE_DATASETS)
NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"

PosInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
Steps = Annotated[int, Field(gt=0, le=10**9)]  # a count of steps (or samples): positive, and one that can end
Batch = Annotated[int, Field(gt=0, le=10**6)]
Samples = Annotated[int, Field(gt=0, le=10**8)]
PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
UnitOpen = Annotated[float, Field(gt=0, lt=1)]
UnitHalfOpen = Annotated[float, Field(gt=0, le=1)]
DatasetName = Literal[DATASETS]  # type: ignore[valid-type]


class Section(BaseModel):
    """Base of every section: unknown keys are errors, values are not coerced from strings."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True, allow_inf_nan=False)


class DatasetSpec(Section):
    """What to fit: a toy 2-D density (fresh samples each step) or an image set.

    ``validation_samples``: the size of the validation split that selects the reported checkpoint (the test split
    only reports): fresh points drawn once for toy sets (null: as many as ``test_samples``), the last images of the
    training split for image sets (null: 10 % of it), never trained on.
    """

    name: DatasetName | None = None
    test_samples: Samples = 10000
    validation_samples: Samples | None = None
    train_subset: Samples | None = None
    n_bins: PosInt | None = None


class ModelSpec(BaseModel):
    """``family`` plus any options of that family; options are checked per run with ``resolve_config``."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)

    family: str | None = None


class EstimatorSpec(Section):
    """Shorthand for the log-det estimator options of every run's model: each key set here is merged into the
    model options of the runs whose family declares it (``kind`` is the model option ``estimator``; the others have
    the same name), before the config hash is taken; a model option set in ``model`` wins. Families with a closed-form
    log-det have none of these options and are unaffected; a key that applies to no run of the campaign is an error.

    ``kind``: ``exact`` (full Jacobian: small dimension only), ``truncated`` (``n_terms``, biased, i-ResNet),
    ``roulette`` (unbiased; ``n_exact_terms`` always computed, then a random number of further terms from ``dist``)
    or, for FFJORD, ``hutchinson``. Evaluation uses ``eval_n_exact_terms`` exact terms. Values are checked by the
    family (``nflab models FAMILY``).
    """

    kind: Literal["exact", "truncated", "roulette", "hutchinson"] | None = None
    n_terms: PosInt | None = None
    n_exact_terms: NonNegInt | None = None
    dist: Literal["geometric", "poisson"] | None = None
    geom_p: UnitOpen | None = None
    poisson_lambda: PosFloat | None = None
    probe: Literal["gaussian", "rademacher"] | None = None
    n_probes: PosInt | None = None
    neumann_grad: bool | None = None
    memory_efficient: bool | None = None
    eval_n_exact_terms: NonNegInt | None = None


class TrainSpec(Section):
    """Optimisation loop: steps, batch, optimiser, schedule, logging cadence, seed, dtype and device."""

    steps: Steps = 5000
    batch_size: Batch = 500
    lr: PosFloat = 1e-3
    optimizer: Literal["adam", "adamax"] = "adam"
    betas: Annotated[list[Annotated[float, Field(ge=0, lt=1)]], Field(min_length=2, max_length=2)] = [0.9, 0.999]
    weight_decay: NonNegFloat = 0.0
    warmup_steps: Annotated[int, Field(ge=0, le=10**9)] = 0
    grad_clip: PosFloat | None = None
    ema: UnitOpen | None = None
    eval_every: Steps = 500
    checkpoint_every: Steps = 1000
    log_every: Steps = 50
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 0
    dtype: Literal["float32", "float64"] = "float32"
    device: Literal["auto", "cpu", "cuda"] = "auto"


#: default search ranges of the train options in the ``optimizer`` space (the model's come from their declarations)
TRAIN_SEARCH: dict[str, dict[str, Any]] = {
    "lr": {"low": 1e-4, "high": 1e-2, "log": True},
    "optimizer": {"choices": ["adam", "adamax"]},
}


class EvalSpec(Section):
    """Held-out evaluation: batch, exact log-det (auto: when the dimension is small), plot samples, selection.

    Every ``train.eval_every`` steps the validation split is evaluated and the best ``best_metric`` on it selects
    the reported checkpoint (its test metric is the ``best`` result). ``average_last``: the test metric is also
    evaluated at the last N evaluations and their mean reported (the toy papers' protocol; null: 20 for toy sets,
    0 — off — for images).
    """

    batch_size: Batch = 1000
    exact: Literal["auto"] | bool = "auto"
    samples: Samples = 20000
    best_metric: Literal["nats", "bpd"] | None = None
    average_last: NonNegInt | None = None


class ResourcesSpec(Section):
    """Ray resources of one run (fractional GPUs allowed) and run-level retries."""

    cpu: PosFloat = 1
    gpu: NonNegFloat = 0
    retries: NonNegInt = 2


FIT1D_BRANCH_FIELDS: dict[str, tuple[str, ...]] = {
    "mlp": ("hidden",),
    "dense": ("dense_depth", "dense_growth", "lip_coeff"),
}


class AnalysisSpec(Section):
    """A study attached to a density run: ``none`` (default) or ``estimator_bias`` (E4), which runs after the run's
    training, on its best checkpoint: for every n in ``terms``, the bias and std of the truncated series with n terms
    and of Russian roulette with n exact terms, against the exact log-det, over ``repeats`` probe draws on the first
    ``points`` held-out samples (whole-flow sums)."""

    kind: Literal["none", "estimator_bias"] = "none"
    terms: Annotated[list[Annotated[int, Field(gt=0, le=1000)]], Field(min_length=1)] = Field(
        default_factory=lambda: list(range(1, 21))
    )
    repeats: Annotated[int, Field(ge=2, le=10**6)] = 100
    points: Batch = 256

    @field_validator("terms")
    @classmethod
    def _sorted_terms(cls, terms: list[int]) -> list[int]:
        return sorted(set(terms))

    def resolved(self) -> dict[str, Any]:
        """``kind`` and its options (what a run's config records)."""
        return self.model_dump() if self.kind != "none" else {"kind": "none"}


class Fit1dSpec(Section):
    """E1, a run kind of its own: a regression (MSE) of the 1-D ``target`` with the two-block ``variant``
    (``residual`` R∘R, ``scaled_residual`` R⁺R∘R⁺R, ``scaled_inverse_residual`` R⁺I∘R⁺R, ``scaled_monotone`` R⁺M∘R⁺M);
    branches are ``mlp`` (``hidden``) or ``dense`` (``dense_depth``, ``dense_growth``, ``lip_coeff``) with
    ``activation`` and Lipschitz ``coeff``. Steps, batch, lr, seed, dtype and the logging/evaluation cadence come from
    ``train``; the fit error is the MSE on ``grid`` evenly spaced points of the target's domain. A pipeline with a
    ``fit1d`` section has no ``dataset``, ``model``, ``estimator``, ``eval`` or ``analysis``; its runs' configs are
    ``{kind: fit1d, fit1d, train, resources}`` (the options of the chosen branch only)."""

    target: Literal[ONED_TARGETS] = "impflowfunc"  # type: ignore[valid-type]
    variant: Literal[FIT1D_VARIANTS] = "scaled_monotone"  # type: ignore[valid-type]
    branch: Literal[BRANCHES] = "dense"  # type: ignore[valid-type]
    activation: Literal[tuple(ACTIVATIONS)] = "cpila"  # type: ignore[valid-type]
    coeff: UnitOpen = 0.98
    hidden: Annotated[list[Annotated[int, Field(gt=0, le=65536)]], Field(min_length=1)] = Field(
        default_factory=lambda: [64, 64]
    )
    dense_depth: Annotated[int, Field(gt=0, le=100)] = 3
    dense_growth: Annotated[int, Field(gt=0, le=65536)] = 16
    lip_coeff: UnitHalfOpen = 0.99
    grid: Annotated[int, Field(ge=2, le=10**7)] = 1000

    def resolved(self) -> dict[str, Any]:
        """The options of the chosen branch only (what a run's config records)."""
        names = ("target", "variant", "branch", "activation", "coeff", "grid", *FIT1D_BRANCH_FIELDS[self.branch])
        return {name: getattr(self, name) for name in names}


class CouplingLinearSpec(Section):
    """E6 (Koehler et al.), a run kind of its own: regress compositions of K affine couplings with linear s and t on a
    fixed partition of ℝ^``dim`` onto ``maps`` random linear maps T (iid N(0, 1) entries, conditioned on det T > 0),
    for every K in ``couplings``; the fit error is the relative error E‖f(x) − Tx‖² / E‖Tx‖² on ``test_points`` fixed
    Gaussian points at the end of each fit. Steps, batch, lr, seed, dtype and the evaluation cadence come
    from ``train``. A pipeline with a ``coupling_linear`` section has no ``dataset``, ``model``, ``estimator``,
    ``eval`` or ``analysis``; its runs' configs are ``{kind: coupling_linear, coupling_linear, train, resources}``."""

    dim: Annotated[int, Field(ge=2, le=4096)] = 16
    couplings: Annotated[list[Annotated[int, Field(gt=0, le=1000)]], Field(min_length=1)] = Field(
        default_factory=lambda: [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48]
    )
    maps: Annotated[int, Field(gt=0, le=10_000)] = 4
    test_points: Annotated[int, Field(gt=0, le=10**7)] = 4096

    @field_validator("couplings")
    @classmethod
    def _sorted_couplings(cls, couplings: list[int]) -> list[int]:
        return sorted(set(couplings))


#: run kinds of their own (a section naming the kind replaces the density sections)
RUN_KINDS: tuple[str, ...] = ("fit1d", "coupling_linear")

ESTIMATOR_OPTION = {"kind": "estimator"}  # estimator section key → model option (the others: the same name)

SECTIONS: dict[str, type[BaseModel]] = {
    "dataset": DatasetSpec,
    "model": ModelSpec,
    "estimator": EstimatorSpec,
    "train": TrainSpec,
    "eval": EvalSpec,
    "resources": ResourcesSpec,
    "analysis": AnalysisSpec,
    "fit1d": Fit1dSpec,
    "coupling_linear": CouplingLinearSpec,
}
DENSITY_ONLY = ("dataset", "model", "estimator", "eval", "analysis")  # sections a fit1d (…) campaign has none of


class Pipeline(Section):
    """A campaign as written: base sections, a matrix of dotted paths (cartesian product) and repeats.

    Build it with ``load_pipeline`` (which also validates every run of the matrix and remembers YAML
    lines for error messages); ``expand`` turns it into ``RunSpec``s.
    """

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    estimator: EstimatorSpec = Field(default_factory=EstimatorSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    fit1d: Fit1dSpec | None = None
    coupling_linear: CouplingLinearSpec | None = None
    matrix: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(default_factory=dict)
    repeats: Annotated[int, Field(gt=0, le=10**6)] = 1
    tags: dict[str, str] | None = None
    tune: TuneSpec | None = None

    _locator: Any = PrivateAttr(default=None)
    _overrides: dict[str, Any] = PrivateAttr(default_factory=dict)
    _runs: Any = PrivateAttr(default=None)  # the expansion (``expand``), computed once
    _source: str = PrivateAttr(default="")  # the YAML text it was loaded from


class RunConfig(Section):
    """One run's sections as validated; ``resolve_run`` turns its dump into the resolved config (``RunSpec.config``:
    the ``estimator`` section merged into the model, ``analysis`` listed with the options of its kind only unless the
    kind is ``none``; a fit1d run is ``{kind: fit1d, fit1d, train, resources}``)."""

    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    model: dict[str, Any] = Field(default_factory=dict)
    fit1d: Fit1dSpec | None = None
    coupling_linear: CouplingLinearSpec | None = None
    estimator: EstimatorSpec = Field(default_factory=EstimatorSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        if self.fit1d is not None:
            return {
                "kind": "fit1d",
                "fit1d": self.fit1d.resolved(),
                "train": data["train"],
                "resources": data["resources"],
            }
        if self.coupling_linear is not None:
            return {
                "kind": "coupling_linear",
                "coupling_linear": data["coupling_linear"],
                "train": data["train"],
                "resources": data["resources"],
            }
        data.pop("analysis", None)
        data.pop("fit1d", None)
        data.pop("coupling_linear", None)
        if self.analysis.kind != "none":
            data["analysis"] = self.analysis.resolved()
        return data


class RunSpec(BaseModel):
    """One run of a campaign: its resolved config (what the store keeps, the config hash is taken of and the worker
    receives), key, seed and matrix values; ``model_dump()`` is JSON-serialisable."""

    model_config = ConfigDict(extra="forbid")

    campaign: str
    run_key: str
    config_hash: str
    seed: int
    repeat: int
    overrides: dict[str, Any]
    config: dict[str, Any]
