"""MLflow logging of one nflab run through ``MlflowClient`` (no fluent global state, safe in Ray workers).

- One experiment per campaign, created race-safely; when nflab creates it for a ``sqlite:///…/mlflow.db``
  store, artifacts go to ``artifacts/`` next to the database file.
- One MLflow run per nflab run, tagged ``nflab.run_id``/``run_key``/``config_hash``/``campaign`` and
  ``nflab.environment`` (the worker's environment fingerprint: versions, BLAS, CPU, CUDA, determinism, as JSON).
  Its id is kept in ``<run_dir>/run.json``; a resumed run continues the same MLflow run, and metrics at steps
  already logged (before a crash) are skipped, so histories have no duplicated steps.
- Every call is retried with exponential backoff on transient store errors ("database is locked",
  OperationalError…), since several processes may write one SQLite file.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from .environment import environment_fingerprint

T = TypeVar("T")
ENVIRONMENT_TAG = "nflab.environment"

MAX_PARAM_VALUE = 500
PARAM_BATCH = 100
METRIC_BATCH = 1000
_TRANSIENT = ("database is locked", "operationalerror", "database table is locked", "busy", "deadlock", "timed out")


def _is_transient(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(word in text for word in _TRANSIENT)


def with_retry(fn: Callable[..., T], *args: Any, attempts: int = 10, base_delay: float = 0.05, **kwargs: Any) -> T:
    """Call ``fn`` and retry transient store errors with jittered exponential backoff (about 50 s in all)."""
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if attempt == attempts - 1 or not _is_transient(exc):
                raise
            time.sleep(min(10.0, base_delay * 2**attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")  # pragma: no cover


def absolute_tracking_uri(uri: str) -> str:
    """Make a relative ``sqlite:///`` path absolute, so that workers with another cwd reach the same file."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/") and ":memory:" not in uri:
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def default_artifact_location(tracking_uri: str) -> str | None:
    """``file:`` URI of ``artifacts/`` next to a SQLite database; ``None`` (server default) otherwise."""
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix):
        db = Path(tracking_uri[len(prefix) :].split("?")[0])
        return (db.resolve().parent / "artifacts").as_uri()
    return None


def ensure_experiment(client: MlflowClient, name: str, tracking_uri: str) -> str:
    """The id of experiment ``name``, created if missing; concurrent creators all get the same id."""
    for _ in range(5):
        exp = with_retry(client.get_experiment_by_name, name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                with_retry(client.restore_experiment, exp.experiment_id)
            return exp.experiment_id
        try:
            return with_retry(client.create_experiment, name, artifact_location=default_artifact_location(tracking_uri))
        except MlflowException as exc:  # somebody else created it between our read and our write
            if "already exists" not in str(exc).lower() and "unique" not in str(exc).lower():
                raise
    raise RuntimeError(f"could not create or find MLflow experiment {name!r}")


def prepare_tracking(tracking_uri: str, experiment_name: str) -> str:
    """Initialise the store and experiment once from the driver, before workers start; returns its id."""
    uri = absolute_tracking_uri(tracking_uri)
    return ensure_experiment(MlflowClient(tracking_uri=uri), experiment_name, uri)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts → dotted keys (``{"train": {"lr": 1}}`` → ``{"train.lr": 1}``)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def param_value(value: Any) -> str:
    """A param string: plain for strings, JSON otherwise, cut to MLflow's value limit."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= MAX_PARAM_VALUE else text[: MAX_PARAM_VALUE - 3] + "..."


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class Tracker:
    """The MLflow run of one nflab run; create with :meth:`open`."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self._logged_upto: dict[str, int] = {}

    @classmethod
    def open(
        cls,
        *,
        tracking_uri: str,
        experiment_name: str,
        spec: Mapping[str, Any],
        nflab_run_id: str,
        run_dir: Path,
    ) -> Tracker:
        """Continue the run recorded in ``run.json`` (or found by tags), else create it; write ``run.json``."""
        uri = absolute_tracking_uri(tracking_uri)
        client = MlflowClient(tracking_uri=uri)
        exp_id = ensure_experiment(client, experiment_name, uri)
        run_file = run_dir / "run.json"
        run_id = _recorded_run(client, run_file) or _tagged_run(client, exp_id, nflab_run_id, spec["run_key"])
        if run_id is None:
            tags = {
                "nflab.run_id": nflab_run_id,
                "nflab.run_key": spec["run_key"],
                "nflab.config_hash": spec.get("config_hash", ""),
                "nflab.campaign": spec.get("campaign", ""),
                **{str(k): str(v) for k, v in (spec.get("tags") or {}).items()},  # e.g. nflab.study, nflab.trial
                ENVIRONMENT_TAG: json.dumps(environment_fingerprint(), sort_keys=True),  # where it ran (no secrets)
            }
            run = with_retry(client.create_run, exp_id, tags=tags, run_name=spec["run_key"])
            run_id = run.info.run_id
        else:
            with_retry(client.update_run, run_id, status="RUNNING")
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = run_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"mlflow_run_id": run_id, "experiment_id": exp_id, "nflab_run_id": nflab_run_id}))
        tmp.replace(run_file)
        tracker = cls(client, run_id)
        tracker._load_logged_steps()
        return tracker

    def _load_logged_steps(self) -> None:
        run = with_retry(self.client.get_run, self.run_id)
        for key in run.data.metrics:
            history = with_retry(self.client.get_metric_history, self.run_id, key)
            self._logged_upto[key] = max((m.step for m in history), default=-1)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log flattened params in batches (re-logging identical values on resume is accepted by MLflow)."""
        items = [Param(k, param_value(v)) for k, v in flatten(params).items()]
        for batch in _chunks(items, PARAM_BATCH):
            with_retry(self.client.log_batch, self.run_id, params=batch)

    def log_metrics(self, metrics: Mapping[str, float | None], step: int) -> None:
        """Log finite metrics at ``step``, skipping keys already logged at or beyond it (resume)."""
        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step)
            for k, v in metrics.items()
            if v is not None and step > self._logged_upto.get(k, -1) and float(v) == float(v)
        ]
        for batch in _chunks(items, METRIC_BATCH):
            with_retry(self.client.log_batch, self.run_id, metrics=batch)
        for m in items:
            self._logged_upto[m.key] = step

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set run tags (values cut to the param limit)."""
        items = [RunTag(k, param_value(v)) for k, v in tags.items()]
        with_retry(self.client.log_batch, self.run_id, tags=items)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Copy a local file into the run's artifact store."""
        with_retry(self.client.log_artifact, self.run_id, str(path), artifact_path)

    def finish(self, status: str) -> None:
        """Mark the run FINISHED or FAILED."""
        with_retry(self.client.set_terminated, self.run_id, status)


def terminate_runs(tracking_uri: str, experiment_id: str, nflab_run_ids: Iterable[str], status: str = "KILLED") -> int:
    """End the still active (RUNNING/SCHEDULED) MLflow runs of these nflab runs with ``status``; returns how many.

    Used when a campaign is cancelled or its driver died: the runs' own processes can no longer end them.
    """
    wanted = set(nflab_run_ids)
    if not wanted:
        return 0
    client = MlflowClient(tracking_uri=absolute_tracking_uri(tracking_uri))
    found: list[str] = []
    for state in ("RUNNING", "SCHEDULED"):  # MLflow's filter has no OR, and IN only for run ids
        token = None
        while True:
            page = with_retry(
                client.search_runs,
                [experiment_id],
                filter_string=f"attributes.status = '{state}'",
                max_results=1000,
                page_token=token,
            )
            found += [run.info.run_id for run in page if run.data.tags.get("nflab.run_id") in wanted]
            token = page.token
            if not token:
                break
    for run_id in found:  # after the search: ending runs while paging would shift the pages
        with_retry(client.set_terminated, run_id, status)
    return len(found)


def _recorded_run(client: MlflowClient, run_file: Path) -> str | None:
    if not run_file.is_file():
        return None
    try:
        run_id = json.loads(run_file.read_text())["mlflow_run_id"]
        with_retry(client.get_run, run_id)
        return run_id
    except (ValueError, KeyError, MlflowException):
        return None


def _tagged_run(client: MlflowClient, exp_id: str, nflab_run_id: str, run_key: str) -> str | None:
    found = with_retry(
        client.search_runs,
        [exp_id],
        filter_string=f"tags.`nflab.run_id` = '{nflab_run_id}' AND tags.`nflab.run_key` = '{run_key}'",
        max_results=1,
    )
    return found[0].info.run_id if found else None
