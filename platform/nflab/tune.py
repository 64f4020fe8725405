"""Tuning: an Optuna study driven by ask-and-tell, each trial an nflab run on Ray.

- The driver holds the study in Optuna's own storage (``NFLAB_OPTUNA_URL``: a journal file by default, an RDB URL
  in team mode), never in nflab's tables; ``optuna.load_study`` and ``optuna-dashboard`` read it.
- Each trial is the pipeline's one configuration with the sampled values applied, resolved and hashed like any run,
  recorded in nflab's store (a campaign per study) and MLflow (nested under the study's parent run, tags
  ``nflab.study``/``nflab.trial``), and executed as a Ray task with the pipeline's resources and retries,
  ``parallel`` at a time.
- Every validation evaluation comes back through the progress channel: ``trial.report`` then ``should_prune``; a
  pruned trial's task is cancelled, its run ``cancelled`` in the store, KILLED in MLflow, PRUNED in Optuna. A failed
  run (NaN, a solver that does not converge) is told FAIL with its reason and the study goes on.
- Resume: running ``nflab tune`` on the same pipeline again continues its study (the study name derives from the
  pipeline's configuration and space); trials left RUNNING by a dead driver are told FAIL, marked interrupted (they
  do not count) and their parameters enqueued again; the total ``trials`` counts finished, pruned and failed ones.
- Reproducible search: the sampler is seeded in the driver and a trial is asked only when a slot is free, so with
  ``parallel: 1`` two studies with the same seed propose the same parameters; each trial records the order it was
  proposed in (user attr ``nflab.proposed``), which replays a parallel study by enqueueing its trials in that order.
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nflab.pipelines.errors import Invalid, PipelineError
from nflab.pipelines.hashing import canonical_json, sha256_hex
from nflab.settings import Settings, redact
from nflab.store import Store, StoreLookupError

if TYPE_CHECKING:  # the schema imports the flow family (torch): loaded by what prepares or runs a study, not by
    # what reads one (nflab tune list / show, the web app)
    from nflab.pipelines import Pipeline
    from nflab.pipelines.tune_space import Dimension

OnEvent = Callable[[str, dict[str, Any]], None]
PRUNED_TAG, STUDY_TAG, TRIAL_TAG = "nflab.pruned_at_step", "nflab.study", "nflab.trial"


class StudyNotFound(LookupError):
    """No study of that name in the Optuna storage (one line, exit 2)."""


@dataclass
class PreparedStudy:
    """A tuned pipeline validated once: its study name, space, the pipeline and where it came from."""

    name: str
    pipeline: Pipeline
    dims: list[Dimension]
    fingerprint: str
    yaml_text: str
    overrides: list[str]
    filename: str

    @property
    def tune(self) -> Any:
        return self.pipeline.tune

    @property
    def objectives(self) -> list[str]:
        return [self.tune.objective.metric, *self.tune.also]


@dataclass
class StudyOutcome:
    name: str
    campaign_id: str
    counts: dict[str, int] = field(default_factory=dict)
    best: list[dict[str, Any]] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)


def prepare_study(
    path: str | Path, overrides: Sequence[str], settings: Settings, *, trials: int | None = None,
    parallel: int | None = None,
) -> PreparedStudy:  # fmt: skip
    """Validate everything before anything is written (no journal file, no store row): the pipeline, its
    ``tune`` section and space, the sampler's extra packages and the data files."""
    from nflab.pipelines import check_dataset_available, expand, load_pipeline, pipeline_path
    from nflab.pipelines.tune_space import search_space

    extra = [*overrides]
    if trials is not None:
        extra.append(f"tune.trials={trials}")
    if parallel is not None:
        extra.append(f"tune.parallel={parallel}")
    pipeline = load_pipeline(path, extra)
    filename = pipeline_path(path).name
    if pipeline.tune is None:
        raise PipelineError(filename, "tune", "the pipeline has no tune section (nflab run runs it as a campaign)")
    dims = search_space(pipeline)
    if pipeline.tune.sampler.kind == "cmaes":
        import importlib.util

        if importlib.util.find_spec("cmaes") is None:
            raise PipelineError(filename, "tune.sampler.kind", "cmaes needs the package cmaes (pip install cmaes)")
    check_dataset_available(pipeline, str(settings.data_root))
    tune = pipeline.tune.model_dump(mode="json", exclude={"trials", "parallel"})
    base = expand(pipeline)[0].config
    fingerprint = sha256_hex(canonical_json({"name": pipeline.name, "config": base, "tune": tune}))
    return PreparedStudy(f"{pipeline.name}-{fingerprint[:8]}", pipeline, dims, fingerprint, pipeline._source,
                         list(overrides), filename)  # fmt: skip


# ------------------------------------------------------------------------------------------- Optuna objects


def open_storage(url: str, *, create: bool = True) -> Any:
    """Optuna storage of ``NFLAB_OPTUNA_URL``: a journal file (a path) or an RDB URL; ``create=False`` returns None
    for a journal file that does not exist (reading never creates it)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if "://" in url:
        kwargs = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {"pool_pre_ping": True}
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    path = Path(url).expanduser()
    if not create and not path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


#: start-up trials of ``startup: sobol`` when ``startup_trials`` is not given (Optuna's default for TPE and GP)
SOBOL_STARTUP_TRIALS = 10


def make_sampler(prep: PreparedStudy) -> Any:
    """The study's sampler, seeded (samplers are not persisted: re-created on every resume)."""
    import optuna.samplers as s

    spec = prep.tune.sampler
    seed = spec.seed
    if spec.kind == "grid":
        from nflab.pipelines.tune_space import grid_points

        return s.GridSampler(grid_points(prep.dims), seed=seed)
    n_startup = spec.startup_trials
    if n_startup is None and spec.startup == "sobol":
        n_startup = SOBOL_STARTUP_TRIALS
    startup = {} if n_startup is None else {"n_startup_trials": n_startup}
    sampler = {
        "tpe": lambda: s.TPESampler(seed=seed, **startup),
        "random": lambda: s.RandomSampler(seed=seed),
        "cmaes": lambda: s.CmaEsSampler(seed=seed, **startup),
        "gp": lambda: s.GPSampler(seed=seed, **startup),
        "nsga2": lambda: s.NSGAIISampler(seed=seed),
    }[spec.kind]()
    if spec.startup == "sobol":
        return sobol_startup(sampler, distributions(prep.dims), startup["n_startup_trials"], seed)
    return sampler


def sobol_startup(model: Any, space: dict[str, Any], n: int, seed: int | None) -> Any:
    """``model`` (a model-based Optuna sampler) whose first ``n`` trials lie on a scrambled Sobol sequence over
    ``space``: trial i takes point i of ``scipy.stats.qmc.Sobol(len(space), scramble=True, seed=seed)`` (Owen
    scrambling; for n = 2^m every parameter's range holds one point in each 1/n of it), mapped through each
    distribution's inverse CDF (log ranges on the log scale). Deterministic in (seed, trial number), so a resumed or
    replayed study sees the same start-up points; trials from trial n on are the model's."""
    from optuna.samplers import BaseSampler
    from scipy.stats import qmc

    points = qmc.Sobol(len(space), scramble=True, seed=seed).random_base2(max(0, math.ceil(math.log2(max(n, 1)))))
    column = {name: i for i, name in enumerate(space)}

    class SobolStartup(BaseSampler):
        def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
            return {} if trial.number < n else model.infer_relative_search_space(study, trial)

        def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
            return {} if trial.number < n else model.sample_relative(study, trial, search_space)

        def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
            if trial.number < n and name in column:
                return unit_to_value(float(points[trial.number, column[name]]), dist)
            return model.sample_independent(study, trial, name, dist)

        def before_trial(self, study: Any, trial: Any) -> None:
            model.before_trial(study, trial)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            model.after_trial(study, trial, state, values)

        def reseed_rng(self) -> None:
            model.reseed_rng()

    return SobolStartup()


def unit_to_value(u: float, dist: Any) -> Any:
    """The value of an Optuna distribution at quantile ``u`` in [0, 1) of its uniform measure: a choice, a step of an
    integer or stepped range, or a point of a float range (on the log scale for log ranges)."""
    if hasattr(dist, "choices"):
        return dist.choices[min(int(u * len(dist.choices)), len(dist.choices) - 1)]
    low, high = dist.low, dist.high
    if dist.log:
        value = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
        return min(max(round(value), low), high) if isinstance(low, int) and isinstance(high, int) else value
    step = getattr(dist, "step", None)
    if step is None:
        return low + u * (high - low)
    count = round((high - low) / step) + 1
    return low + step * min(int(u * count), count - 1)


def make_pruner(prep: PreparedStudy) -> Any:
    """The study's pruner; its resource is the training step (evaluations every ``train.eval_every``). No pruner
    decides before ``warmup_steps``: the median pruner's warm-up, the first rung (``min_resource``) of the others."""
    import optuna.pruners as p

    spec, train = prep.tune.pruner, prep.pipeline.train
    first_rung = max(train.eval_every, spec.warmup_steps)
    if spec.kind == "none" or len(prep.objectives) > 1:  # Optuna's pruners take one objective
        return p.NopPruner()
    if spec.kind == "median":
        return p.MedianPruner(n_startup_trials=spec.startup_trials, n_warmup_steps=spec.warmup_steps)
    if spec.kind == "hyperband":
        return p.HyperbandPruner(
            min_resource=first_rung, max_resource=train.steps, reduction_factor=spec.reduction_factor
        )
    return p.SuccessiveHalvingPruner(min_resource=first_rung, reduction_factor=spec.reduction_factor)


def distributions(dims: Sequence[Dimension]) -> dict[str, Any]:
    """Optuna distributions keyed by dotted path."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    for d in dims:
        if d.kind == "categorical":
            out[d.path] = CategoricalDistribution(list(d.choices or ()))
        elif d.kind == "int":
            out[d.path] = IntDistribution(int(d.low), int(d.high), log=d.log)
        else:
            out[d.path] = FloatDistribution(float(d.low), float(d.high), log=d.log)
    return out


# ----------------------------------------------------------------------------------------------- the driver


@dataclass
class _Active:
    trial: Any
    run_id: str
    spec: dict[str, Any]
    last: tuple[int, float] | None = None


def _finished_states() -> tuple[Any, ...]:
    from optuna.trial import TrialState

    return (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def counted_trials(study: Any) -> list[Any]:
    """The trials that count towards ``trials``: finished, pruned or failed, not interrupted by a dead driver."""
    return [
        t
        for t in study.get_trials(deepcopy=False, states=_finished_states())
        if not t.user_attrs.get("nflab.interrupted")
    ]


def objective_values(result: dict[str, Any], prep: PreparedStudy) -> list[float]:
    """The trial's objectives from its RunResult: the best validation metric (the selected checkpoint's), then
    ``seconds_per_step`` (wall time per training step) when asked for; raises ValueError when one is missing."""
    metric = prep.tune.objective.metric
    rows = [
        r["value"]
        for r in result.get("results", [])
        if r["split"] == "validation" and r["kind"] == "best" and r["metric"] == metric
    ]
    if not rows or not math.isfinite(rows[0]):
        raise ValueError(f"the run reported no finite validation {metric}")
    values = [float(rows[0])]
    if "seconds_per_step" in prep.tune.also:
        values.append(float(result.get("wall_s") or 0.0) / max(1, int(result.get("steps") or 1)))
    return values


def constraint_values(result: dict[str, Any], prep: PreparedStudy) -> dict[str, float]:
    """``certificate − bound`` per constraint (feasible when ≤ 0); a certificate the run could not compute (a flow
    without an inverse) does not constrain it; a non-finite one is infeasible."""
    out = {}
    for name, bound in prep.tune.constraints.items():
        value = (result.get("certificates") or {}).get(name)
        if value is None:
            out[name] = 0.0
        else:
            out[name] = float(value) - bound if math.isfinite(float(value)) else 1e300
    return out


class StudyDriver:
    """Runs one study to its trial count; see the module docstring."""

    def __init__(
        self, prep: PreparedStudy, settings: Settings, *, store: Store, on_event: OnEvent | None = None,
        address: str | None = None,
    ) -> None:  # fmt: skip
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        self.prep, self.settings, self.store, self.address = prep, settings, store, address
        self.on_event = on_event or (lambda kind, info: None)
        self.storage = open_storage(settings.optuna_url)
        directions = [prep.tune.objective.direction] + ["minimize"] * len(prep.tune.also)
        self.study = optuna.create_study(
            study_name=prep.name, storage=self.storage, sampler=make_sampler(prep), pruner=make_pruner(prep),
            directions=directions, load_if_exists=True,
        )  # fmt: skip
        self.distributions = distributions(prep.dims)
        self.campaign_id = self._open_campaign()
        self.parent_run_id = self._parent_run()
        self.runner: Any = None
        self.active: dict[str, _Active] = {}
        from nflab.workers.environment import code_version_label

        self.code_version = code_version_label()

    # -- set-up -------------------------------------------------------------------------------------------------

    def _open_campaign(self) -> str:
        from nflab.campaign import experiment_name
        from nflab.tracking import ensure_experiment

        attrs = self.study.user_attrs
        if "nflab.campaign_id" in attrs:
            try:
                self.store.get_campaign(attrs["nflab.campaign_id"])
                return attrs["nflab.campaign_id"]
            except StoreLookupError:  # the study outlived its store (another NFLAB_DB_URL): a new campaign
                pass
        prep = self.prep
        self.study.set_metric_names(prep.objectives)
        for key, value in {
            "nflab.pipeline_yaml": prep.yaml_text,
            "nflab.overrides": prep.overrides,
            "nflab.filename": prep.filename,
            "nflab.fingerprint": prep.fingerprint,
            "nflab.space": {d.path: d.describe() for d in prep.dims},
            "nflab.objectives": prep.objectives,
        }.items():
            self.study.set_user_attr(key, value)
        campaign_id = self.store.find_campaign_by_fingerprint(prep.fingerprint)
        if campaign_id is None:
            campaign_id = self.store.create_campaign(prep.name, prep.fingerprint, prep.yaml_text)
            experiment_id = ensure_experiment(self.settings, experiment_name(prep.name, campaign_id))
            self.store.set_mlflow_experiment_id(campaign_id, experiment_id)
        self.study.set_user_attr("nflab.campaign_id", campaign_id)
        return campaign_id

    def _record(self, status: str, **fields: Any) -> None:
        """The study's summary row in nflab's store (what the leaderboard and the web page read)."""
        tune = self.prep.tune
        self.store.record_study(
            self.prep.name, self.campaign_id, objectives=self.prep.objectives,
            directions=[d.name.lower() for d in self.study.directions], sampler=tune.sampler.kind,
            pruner=tune.pruner.kind, n_trials=tune.trials, status=status, **fields,
        )  # fmt: skip

    @property
    def experiment_name(self) -> str:
        from nflab.campaign import experiment_name

        return experiment_name(self.prep.name, self.campaign_id)

    def _client(self) -> Any:
        from mlflow.tracking import MlflowClient

        from nflab.workers.tracking import absolute_tracking_uri

        return MlflowClient(tracking_uri=absolute_tracking_uri(self.settings.mlflow_tracking_uri))

    def _parent_run(self) -> str:
        from mlflow.exceptions import MlflowException

        from nflab.workers.tracking import with_retry

        client = self._client()
        experiment_id = self.store.get_campaign(self.campaign_id)["mlflow_experiment_id"]
        run_id = self.study.user_attrs.get("nflab.mlflow_parent_run_id")
        if run_id is not None:
            try:
                if with_retry(client.get_run, run_id).info.experiment_id == experiment_id:
                    with_retry(client.update_run, run_id, status="RUNNING")
                    return run_id
            except MlflowException:  # not in this tracking store: a new parent run
                pass
        tags = {STUDY_TAG: self.prep.name, "nflab.campaign": self.prep.name, "nflab.kind": "study"}
        run = with_retry(client.create_run, experiment_id, tags=tags, run_name=f"study {self.prep.name}")
        params = {f"space.{d.path}": d.describe() for d in self.prep.dims}
        params |= {"sampler": self.prep.tune.sampler.kind, "pruner": self.prep.tune.pruner.kind}
        for key, value in params.items():
            with_retry(client.log_param, run.info.run_id, key, value)
        self.study.set_user_attr("nflab.mlflow_parent_run_id", run.info.run_id)
        return run.info.run_id

    def recover(self) -> list[int]:
        """Trials a dead driver left RUNNING: told FAIL (interrupted, not counted), their parameters enqueued
        again, their runs failed in the store and MLflow. Returns their numbers."""
        from optuna.trial import TrialState

        from nflab.workers.tracking import terminate_runs

        stale = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        run_ids = []
        for t in stale:
            self.storage.set_trial_user_attr(t._trial_id, "nflab.interrupted", True)
            self.storage.set_trial_user_attr(t._trial_id, "nflab.fail_reason", "the tuning driver died")
            self.storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            self.study.enqueue_trial(t.params, user_attrs={"nflab.retry_of": t.number})
            run_id = t.user_attrs.get("nflab.run_id")
            if run_id:
                self.store.set_run_status(run_id, "failed", "interrupted: the tuning driver died; trial re-enqueued")
                run_ids.append(run_id)
        experiment_id = self.store.get_campaign(self.campaign_id)["mlflow_experiment_id"]
        if run_ids and experiment_id:
            terminate_runs(self.settings.mlflow_tracking_uri, experiment_id, run_ids, "FAILED")
        return [t.number for t in stale]

    # -- the loop -----------------------------------------------------------------------------------------------

    def _tell(self, trial: Any, values: Any = None, *, state: Any = None) -> None:
        """``study.tell``; the grid sampler calls ``study.stop()`` after its last point, which Optuna allows only
        inside ``optimize`` — the trial is already stored then, and the loop sees the exhausted grid itself."""
        try:
            self.study.tell(trial, values, state=state)
        except RuntimeError as exc:
            if "Study.stop" not in str(exc):
                raise

    def _grid_exhausted(self) -> bool:
        sampler = self.study.sampler
        return hasattr(sampler, "is_exhausted") and sampler.is_exhausted(self.study)

    def _ask(self, proposed: int) -> None:
        from optuna.trial import TrialState

        trial = self.study.ask(self.distributions)
        trial.set_user_attr("nflab.proposed", proposed)
        try:
            from nflab.pipelines.tune_space import trial_spec

            spec = trial_spec(self.prep.pipeline, trial.params, trial.number, self.prep.name)
        except Invalid as exc:
            reason = f"not a valid run: {exc}"
            trial.set_user_attr("nflab.fail_reason", reason)
            self._tell(trial, state=TrialState.FAIL)
            self.on_event("failed", {"trial": trial.number, "reason": reason})
            return
        spec["tags"] = {
            STUDY_TAG: self.prep.name,
            TRIAL_TAG: str(trial.number),
            "mlflow.parentRunId": self.parent_run_id,
        }
        run_id = self.store.add_runs(self.campaign_id, [spec], code_version=self.code_version)[spec["run_key"]]
        self.store.mark_running(run_id)
        trial.set_user_attr("nflab.run_key", spec["run_key"])
        trial.set_user_attr("nflab.run_id", run_id)
        self._runner().submit(spec, run_id)
        self.active[spec["run_key"]] = _Active(trial, run_id, spec)
        self.on_event("started", {"trial": trial.number, "params": trial.params, "run_key": spec["run_key"]})

    def _runner(self) -> Any:
        if self.runner is None:
            from nflab.campaign import campaign_storage
            from nflab.workers import ensure_ray
            from nflab.workers.trials import TrialRunner

            ensure_ray(self.address or self.settings.ray_address)
            self.runner = TrialRunner(
                workdir=campaign_storage(self.settings, self.campaign_id),  # run storage, as for campaigns
                tracking_uri=self.settings.mlflow_tracking_uri,
                experiment_name=self.experiment_name,
                data_root=str(self.settings.data_root),
            )
        return self.runner

    def _evaluation(self, key: str, step: int, metrics: dict[str, Any]) -> None:
        active = self.active.get(key)
        value = metrics.get(f"val_{self.prep.tune.objective.metric}")
        if active is None or not isinstance(value, int | float) or not math.isfinite(value):
            return
        active.last = (step, float(value))
        self.on_event("evaluation", {"trial": active.trial.number, "step": step, "value": value})
        if len(self.prep.objectives) > 1:
            return
        active.trial.report(float(value), step)
        if active.trial.should_prune():
            self._prune(key, active, step, float(value))

    def _prune(self, key: str, active: _Active, step: int, value: float) -> None:
        from optuna.trial import TrialState

        del self.active[key]
        self.runner.stop(key, {PRUNED_TAG: str(step)})
        metric = self.prep.tune.objective.metric
        self.store.set_run_status(
            active.run_id, "cancelled", f"pruned at step {step} (validation {metric} {value:.4f})"
        )
        active.trial.set_user_attr("nflab.pruned_at_step", step)
        self._tell(active.trial, state=TrialState.PRUNED)
        self.on_event("pruned", {"trial": active.trial.number, "step": step, "value": value})

    def _result(self, key: str, result: dict[str, Any]) -> None:
        from optuna.trial import TrialState

        active = self.active.pop(key, None)
        if active is None:
            return
        trial = active.trial
        try:
            self.store.record_result(active.run_id, result)
        except Exception as exc:  # the run is over either way
            result = {**result, "status": "failed", "error": f"could not record the result: {exc}"[:400]}
            self.store.set_run_status(active.run_id, "failed", result["error"])
        if result.get("status") == "finished":
            try:
                values = objective_values(result, self.prep)
            except ValueError as exc:
                result = {**result, "status": "failed", "error": str(exc)}
        if result.get("status") != "finished":
            reason = str(result.get("error") or "failed")
            trial.set_user_attr("nflab.fail_reason", reason)
            self._tell(trial, state=TrialState.FAIL)
            self.on_event("failed", {"trial": trial.number, "reason": reason})
            return
        for name, value in constraint_values(result, self.prep).items():
            trial.set_constraint(name, value)
        trial.set_user_attr("nflab.steps", int(result.get("steps") or 0))
        if result.get("mlflow_run_id"):
            trial.set_user_attr("nflab.mlflow_run_id", result["mlflow_run_id"])
        self._tell(trial, values if len(values) > 1 else values[0])
        self.on_event("finished", {"trial": trial.number, "values": values})

    def run(self) -> StudyOutcome:
        """Recover, then ask/run/tell until the count is reached (or the grid is exhausted); returns the outcome."""
        interrupted = self.recover()
        self._record("running", counts=state_counts(self.study))
        if interrupted:
            self.on_event("recovered", {"trials": interrupted})
        total, parallel = self.prep.tune.trials, self.prep.tune.parallel
        proposed = len(self.study.trials)
        try:
            while True:
                done = len(counted_trials(self.study))
                while len(self.active) < parallel and done + len(self.active) < total and not self._grid_exhausted():
                    before = len(self.active)
                    self._ask(proposed)
                    proposed += 1
                    if len(self.active) == before:  # an invalid combination: told FAIL at once
                        done += 1
                if not self.active:
                    break
                events, results = self.runner.poll()
                for key, step, metrics in events:
                    self._evaluation(key, step, metrics)
                for key, result in results:
                    self._result(key, result)
        except BaseException:
            self._abandon()
            if self.runner is not None:
                self.runner.close(wait=False)
            raise
        if self.runner is not None:
            self.runner.close()  # a pruned trial still stopping gets its grace to end itself
        return self.finish()

    def _abandon(self) -> None:
        """On an interrupt: the running trials stay RUNNING in Optuna (a re-run recovers them); end their runs."""
        for active in self.active.values():
            self.store.set_run_status(active.run_id, "cancelled", "interrupted; re-run nflab tune to resume the study")
            if self.runner is not None:
                self.runner.stop(active.spec["run_key"])
        with contextlib.suppress(Exception):  # the store may be what failed
            self._record("interrupted", counts=state_counts(self.study))

    def finish(self) -> StudyOutcome:
        """Summaries, plots and the parent run's end."""
        from nflab.workers.tracking import with_retry

        outcome = StudyOutcome(self.prep.name, self.campaign_id, counts=state_counts(self.study))
        outcome.best = best_trials(self.study)
        folder = self.settings.home / "studies" / self.prep.name
        outcome.plots = write_plots(self.study, folder)
        client = self._client()
        for path in outcome.plots:
            with_retry(client.log_artifact, self.parent_run_id, path, "plots")
        if outcome.best and len(outcome.best[0]["values"]) == 1:
            with_retry(client.log_metric, self.parent_run_id, "best_value", outcome.best[0]["values"][0])
        with_retry(
            client.set_tag, self.parent_run_id, "nflab.best_trial", json.dumps([b["number"] for b in outcome.best])
        )
        with_retry(client.set_terminated, self.parent_run_id, "FINISHED")
        self.store.set_campaign_status(self.campaign_id, "finished")
        self._record("finished", counts=outcome.counts, best=outcome.best)
        return outcome


def run_study(
    prep: PreparedStudy,
    settings: Settings,
    *,
    store: Store,
    on_event: OnEvent | None = None,
    address: str | None = None,
) -> StudyOutcome:
    """Open (or resume) the study of ``prep`` and run it to its trial count."""
    return StudyDriver(prep, settings, store=store, on_event=on_event, address=address).run()


# ------------------------------------------------------------------------------------------------- read side


def state_counts(study: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        name = "interrupted" if t.user_attrs.get("nflab.interrupted") else t.state.name.lower()
        counts[name] = counts.get(name, 0) + 1
    return counts


def feasible(t: Any) -> bool:
    """Whether a trial meets every constraint it was told (Optuna's convention: a value ≤ 0 is satisfied)."""
    return all(v <= 0 for v in (t.constraints or {}).values())


def best_trials(study: Any) -> list[dict[str, Any]]:
    """The best feasible trial (one objective) or the feasible Pareto front (several), as plain dicts."""
    try:
        chosen = [study.best_trial] if len(study.directions) == 1 else list(study.best_trials)
    except ValueError:  # no complete (feasible) trial
        return []
    return [trial_row(t) for t in chosen if feasible(t)]


def trial_row(t: Any) -> dict[str, Any]:
    return {
        "number": t.number,
        "state": "interrupted" if t.user_attrs.get("nflab.interrupted") else t.state.name.lower(),
        "values": list(t.values) if t.values is not None else None,
        "params": dict(t.params),
        "run_key": t.user_attrs.get("nflab.run_key"),
        "run_id": t.user_attrs.get("nflab.run_id"),
        "steps": t.user_attrs.get("nflab.steps") or t.user_attrs.get("nflab.pruned_at_step"),
        "feasible": feasible(t),
        "reason": t.user_attrs.get("nflab.fail_reason"),
        "proposed": t.user_attrs.get("nflab.proposed"),
    }


def list_studies(settings: Settings) -> list[dict[str, Any]]:
    """Every study in the Optuna storage (nothing is created when there is none)."""
    import optuna

    storage = open_storage(settings.optuna_url, create=False)
    if storage is None:
        return []
    out = []
    for s in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=s.study_name, storage=storage)
        best = best_trials(study)
        out.append(
            {
                "name": s.study_name,
                "directions": [d.name.lower() for d in s.directions],
                "objectives": s.user_attrs.get("nflab.objectives"),
                "trials": s.n_trials,
                "counts": state_counts(study),
                "best": [b["values"] for b in best],
                "started": s.datetime_start,
            }
        )
    return out


def load(settings: Settings, name: str) -> Any:
    """The study ``name`` (``StudyNotFound`` naming the studies there are)."""
    import optuna

    storage = open_storage(settings.optuna_url, create=False)
    names = [] if storage is None else optuna.get_all_study_names(storage)
    if name not in names:
        where = redact(settings.optuna_url)
        raise StudyNotFound(f"study: {name!r} is not in {where}; studies: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=name, storage=storage)


def show_study(settings: Settings, name: str) -> dict[str, Any]:
    """A study: its space, objectives, counts, best trial(s) and every trial."""
    study = load(settings, name)
    return {
        "name": name,
        "objectives": study.user_attrs.get("nflab.objectives"),
        "directions": [d.name.lower() for d in study.directions],
        "space": study.user_attrs.get("nflab.space"),
        "campaign_id": study.user_attrs.get("nflab.campaign_id"),
        "counts": state_counts(study),
        "best": best_trials(study),
        "trials": [trial_row(t) for t in study.get_trials(deepcopy=False)],
        "plots": sorted(str(p) for p in (settings.home / "studies" / name).glob("*.*")),
    }


# --------------------------------------------------------------------------------------------------- promote


def promote_pipeline(settings: Settings, name: str, *, seeds: int = 5, trial: int | None = None) -> Pipeline:
    """The best trial's (or trial ``trial``'s, e.g. a Pareto point) configuration as an ordinary pipeline of
    ``seeds`` repeats named ``<study>-best``, validated (no ``tune`` section)."""
    from nflab.pipelines import load_pipeline_text
    from nflab.pipelines.yaml_lines import parse_with_lines

    study = load(settings, name)
    if trial is None:
        best = best_trials(study)
        if not best:
            raise StudyNotFound(f"study: {name!r} has no finished feasible trial to promote")
        if len(best) > 1:
            raise StudyNotFound(
                f"--trial: study {name!r} has a Pareto front; choose one of the trials {[b['number'] for b in best]}"
            )
        params = best[0]["params"]
    else:
        chosen = [t for t in study.get_trials(deepcopy=False) if t.number == trial]
        if not chosen or chosen[0].values is None:
            raise StudyNotFound(f"--trial: {trial} is not a complete trial of study {name!r}")
        params = chosen[0].params
    data, _ = parse_with_lines(study.user_attrs["nflab.pipeline_yaml"])
    data.pop("tune", None)
    data["name"] = f"{name}-best"
    data["repeats"] = seeds
    overrides = [o for o in study.user_attrs.get("nflab.overrides", []) if not o.startswith("tune.")]
    overrides += [f"{path}={json.dumps(value)}" for path, value in params.items()]
    import yaml

    return load_pipeline_text(yaml.safe_dump(data, sort_keys=False), f"{name}-best.yaml", overrides)


# ----------------------------------------------------------------------------------------------------- plots


def write_plots(study: Any, folder: Path) -> list[str]:
    """Optimisation history, parameter importances, slices and (two objectives) the Pareto front as PNG and
    interactive HTML (plotly, its script shipped beside the pages, no CDN) under ``folder``; a plot that cannot be
    drawn (too few trials) is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vm

    folder.mkdir(parents=True, exist_ok=True)
    complete = [t for t in study.trials if t.values is not None and t.state.name == "COMPLETE"]
    if not complete:
        return []
    multi = len(study.directions) > 1
    target = (lambda t: t.values[0]) if multi else None
    names = study.metric_names or ["objective"]
    plots: dict[str, Callable[[], Any]] = {
        "history": lambda: vm.plot_optimization_history(study, target=target, target_name=names[0]),
        "slice": lambda: vm.plot_slice(study, target=target, target_name=names[0]),
    }
    if len(complete) >= 2 and len(study.trials[0].params) >= 1:
        plots["importances"] = lambda: vm.plot_param_importances(study, target=target, target_name=names[0])
    if len(study.directions) == 2:
        plots["pareto"] = lambda: vm.plot_pareto_front(study, target_names=names)
    written = []
    for plot_name, draw in plots.items():
        path = folder / f"{plot_name}.png"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = draw()
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.savefig(path, dpi=100, bbox_inches="tight")
            plt.close(fig)
            written.append(str(path))
        except Exception:  # a plot that cannot be drawn is left out
            plt.close("all")
            continue
        written += _html(study, plot_name, folder, target, names)
    return written


def _html(study: Any, plot_name: str, folder: Path, target: Any, names: list[str]) -> list[str]:
    try:
        import optuna.visualization as v
    except ImportError:  # pragma: no cover
        return []
    try:
        draw = {
            "history": lambda: v.plot_optimization_history(study, target=target, target_name=names[0]),
            "slice": lambda: v.plot_slice(study, target=target, target_name=names[0]),
            "importances": lambda: v.plot_param_importances(study, target=target, target_name=names[0]),
            "pareto": lambda: v.plot_pareto_front(study, target_names=names),
        }[plot_name]
        path = folder / f"{plot_name}.html"
        draw().write_html(str(path), include_plotlyjs="directory")  # plotly.min.js beside it: works offline
        return [str(path)]
    except Exception:  # plotly missing or the plot impossible: PNG only
        return []
