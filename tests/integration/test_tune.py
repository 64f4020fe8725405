"""``nflab tune`` end to end: real Optuna (journal file), real local Ray, real MLflow and nflab SQLite stores."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from typer.testing import CliRunner, Result

from nflab.cli import app

BASE = """\
name: {name}
dataset: {{name: checkerboard, test_samples: 200, validation_samples: 200}}
model: {{family: realnvp, preset: small}}
train: {{steps: {steps}, batch_size: 32, eval_every: 20, checkpoint_every: {steps}, log_every: 20, device: cpu}}
eval: {{batch_size: 200, samples: 200, average_last: 0}}
resources: {{cpu: 1, gpu: 0, retries: 0}}
"""

# grid order with seed 1: 3e-3 (completes), 2e-7 (clearly worse at step 20: pruned), 1000 (diverges: NaN → FAIL)
PRUNE_AND_FAIL = """\
tune:
  space: {train.lr: {choices: [3.0e-3, 1000.0, 2.0e-7]}}
  sampler: {kind: grid, seed: 1}
  pruner: {kind: median, startup_trials: 1}
  trials: 3
  parallel: 1
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("NFLAB_DB_URL", "MLFLOW_TRACKING_URI", "NFLAB_OPTUNA_URL", "NFLAB_DATA", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NFLAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _write(tmp_path: Path, tune: str, *, name: str = "tune-test", steps: int = 40) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(BASE.format(name=name, steps=steps) + tune)
    return path


def _journal(home: Path) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(home / "optuna.journal")))


@pytest.mark.parametrize(
    ("tune", "expected"),
    [
        ("tune:\n  space: {model.nope: {low: 1, high: 2}}\n", "'nope' is not an option of realnvp"),
        ("tune:\n  space: {model.couplings: {low: 0, high: 4}}\n", "outside the declared bounds"),
        ("tune:\n  sampler: {kind: bayes}\n", "tune.sampler.kind"),
        ("tune:\n  sampler: {kind: random, startup_trials: 3}\n", "startup_trials applies to the samplers tpe"),
        ("tune:\n  pruner: {kind: median, reduction_factor: 4}\n", "reduction_factor applies to the pruners hyperband"),
        ("tune:\n  pruner: {kind: hyperband, reduction_factor: 1}\n", "tune.pruner.reduction_factor"),
        ("", "the pipeline has no tune section"),
    ],
)
def test_bad_tune_section_is_one_line_and_writes_nothing(home: Path, tmp_path: Path, tune: str, expected: str) -> None:
    result = _invoke("tune", str(_write(tmp_path, tune)))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.output
    assert not (home / "optuna.journal").exists()
    assert not (home / "nflab.db").exists() and not (home / "mlflow.db").exists()


def test_study_prunes_fails_and_records_every_trial(home: Path, tmp_path: Path, ray_local: None) -> None:
    result = _invoke("tune", str(_write(tmp_path, PRUNE_AND_FAIL, steps=600)), "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    by_lr = {t["params"]["train.lr"]: t for t in shown["trials"]}
    assert by_lr[3e-3]["state"] == "complete"
    assert by_lr[2e-7]["state"] == "pruned"
    assert by_lr[1000.0]["state"] == "fail" and "non-finite" in by_lr[1000.0]["reason"]
    assert [b["number"] for b in shown["best"]] == [by_lr[3e-3]["number"]]

    # Optuna's own storage: the stock loader opens it
    study = optuna.load_study(study_name=shown["name"], storage=_journal(home))
    assert len(study.trials) == 3 and study.best_trial.params == {"train.lr": 3e-3}

    # nflab's store: every trial is a run of the study's campaign
    db = sqlite3.connect(home / "nflab.db")
    rows = dict(db.execute("select run_key, status from nflab_runs where campaign_id = ?", (shown["campaign_id"],)))
    assert rows == {
        by_lr[3e-3]["run_key"]: "finished",
        by_lr[2e-7]["run_key"]: "cancelled",
        by_lr[1000.0]["run_key"]: "failed",
    }

    # MLflow: nested under the study's parent run, tagged; the pruned one stopped early and is KILLED
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id], max_results=100)]
    parent = next(r for r in runs if r.data.tags.get("nflab.kind") == "study")
    trials = {r.data.tags["nflab.run_key"]: r for r in runs if "nflab.trial" in r.data.tags}
    assert len(trials) == 3
    assert all(r.data.tags["nflab.study"] == shown["name"] for r in trials.values())
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in trials.values())
    pruned = trials[by_lr[2e-7]["run_key"]]
    assert pruned.info.status == "KILLED"
    history = client.get_metric_history(pruned.info.run_id, "train_loss")
    assert history and max(m.step for m in history) < 600
    assert trials[by_lr[3e-3]["run_key"]].info.status == "FINISHED"
    # the pruned trial stopped itself (a killed worker writes nothing more), soon after the decision: the driver
    # decides within its 0.5 s poll and the task hears it at its second post after that, a few 20-step evaluations
    # later on a loaded machine (~15 ms a step); a trial that missed the stop would run all 600 steps in ~10 s,
    # inside its 15 s grace, and write no stop line
    log = (home / "runs" / shown["campaign_id"] / by_lr[2e-7]["run_key"] / "train.log").read_text()
    stopped = re.search(r"stopped at step (\d+): the tuning driver pruned this trial", log)
    assert stopped and by_lr[2e-7]["steps"] < int(stopped.group(1)) <= by_lr[2e-7]["steps"] + 10 * 20, log
    assert parent.info.status == "FINISHED"
    assert any(p.endswith("history.png") for p in shown["plots"])

    html = [Path(p) for p in shown["plots"] if p.endswith(".html")]
    assert any(p.name == "history.html" for p in html) and (html[0].parent / "plotly.min.js").is_file()
    assert all("cdn.plot.ly" not in p.read_text() for p in html)  # the pages open without network

    listed = json.loads(_invoke("tune", "list", "--json").stdout)
    assert [s["name"] for s in listed] == [shown["name"]]
    assert _invoke("tune", "show", "nope").exit_code == 2

    # the study's summary in nflab's store: its campaign, counts and best trial with parameters and objective
    ((status, counts, best),) = db.execute(
        "select status, counts, best from nflab_studies where name = ?", (shown["name"],)
    )
    best = json.loads(best)
    assert status == "finished" and json.loads(counts) == {"complete": 1, "pruned": 1, "fail": 1}
    assert [(b["number"], b["params"]) for b in best] == [(by_lr[3e-3]["number"], {"train.lr": 3e-3})]
    assert best[0]["values"] == by_lr[3e-3]["values"]

    # the leaderboard leaves single-seed trials out unless asked for the study
    def ours(*args: str) -> list[dict]:
        out = _invoke("leaderboard", "--json", "--no-reference", *args)
        assert out.exit_code == 0, out.output
        return [row for row in json.loads(out.stdout) if row["source"] == "ours"]

    assert ours() == []
    [trial_row] = ours("--study", shown["name"])
    assert trial_row["n_seeds"] == 1 and trial_row["family"] == "realnvp"
    bad = _invoke("leaderboard", "--study", "nope")
    assert bad.exit_code == 2 and "--study: 'nope' is not a study" in bad.output


def test_optuna_dashboard_reads_the_journal(home: Path, tmp_path: Path, ray_local: None) -> None:
    """The stock optuna-dashboard, given the journal file path, lists nflab's study with its trials."""
    from wsgiref.util import setup_testing_defaults

    from optuna_dashboard import wsgi

    tune = PRUNE_AND_FAIL.replace("trials: 3", "trials: 1")
    shown = json.loads(_invoke("tune", str(_write(tmp_path, tune, name="dash", steps=20)), "--json").stdout)
    environ: dict = {"PATH_INFO": "/api/studies", "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(wsgi(str(home / "optuna.journal"))(environ, lambda s, h, *a: status.append(s)))
    assert status == ["200 OK"], body[:300]
    [study] = json.loads(body)["study_summaries"]
    assert study["study_name"] == shown["name"]


def _params(home: Path, name: str) -> list[dict]:
    storage = _journal(home)
    study_name = next(n for n in optuna.get_all_study_names(storage) if n.startswith(name))
    return [t.params for t in optuna.load_study(study_name=study_name, storage=storage).trials]


def test_seeded_study_proposes_the_same_parameters(home: Path, tmp_path: Path, ray_local: None) -> None:
    tune = """\
tune:
  space: {train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}, model.couplings: {low: 2, high: 6}}
  sampler: {kind: tpe, seed: 7}
  pruner: {kind: none}
  trials: 2
  parallel: 1
"""
    for name in ("seeded-a", "seeded-b"):
        assert _invoke("tune", str(_write(tmp_path, tune, name=name, steps=20))).exit_code == 0
    first, second = _params(home, "seeded-a"), _params(home, "seeded-b")
    assert len(first) == 2 and first == second


def test_resume_after_the_driver_died(home: Path, tmp_path: Path, ray_local: None) -> None:
    """A driver killed mid-trial leaves the trial RUNNING in Optuna: the next run fails it (interrupted, not counted),
    enqueues its parameters again and honours the total."""
    from nflab.settings import load_settings
    from nflab.tune import StudyDriver, prepare_study

    tune = """\
tune:
  space: {train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}}
  sampler: {kind: random, seed: 0}
  pruner: {kind: none}
  trials: 2
  parallel: 1
"""
    path = _write(tmp_path, tune, name="resumed", steps=20)
    settings = load_settings()
    settings.ensure_dirs()
    from nflab.store import Store

    prep = prepare_study(path, [], settings)
    with Store(settings.db_url) as store:
        driver = StudyDriver(prep, settings, store=store)
        dead = driver.study.ask(driver.distributions)  # the dead driver's trial: asked, never told
        lost_lr = dead.params["train.lr"]
    result = _invoke("tune", str(path), "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    states = [t["state"] for t in shown["trials"]]
    assert states.count("interrupted") == 1 and states.count("complete") == 2
    assert shown["trials"][1]["params"]["train.lr"] == lost_lr  # re-enqueued first
    # a further run with the same total does nothing more
    again = json.loads(_invoke("tune", str(path), "--json").stdout)
    assert len(again["trials"]) == 3
    # more trials continue the same study
    more = json.loads(_invoke("tune", str(path), "--trials", "3", "--json").stdout)
    assert [t["state"] for t in more["trials"]].count("complete") == 3

    # promote: the best configuration as an ordinary campaign of several seeds
    promoted = _invoke("tune", "promote", more["name"], "--seeds", "2", "--json")
    assert promoted.exit_code == 0, promoted.output
    runs = json.loads(promoted.stdout)["runs"]
    best_lr = more["best"][0]["params"]["train.lr"]
    assert len(runs) == 2 and {r["status"] for r in runs} == {"finished"}
    assert {r["config"]["train"]["lr"] for r in runs} == {best_lr} and len({r["seed"] for r in runs}) == 2
    assert len({r["config_hash"] for r in runs}) == 1


def test_parallel_multi_objective_study_with_constraints(home: Path, tmp_path: Path, ray_local: None) -> None:
    """Four trials two at a time, nats against seconds per step (a Pareto front), the inversion certificate as a
    constraint: every trial is a run in both stores and the front holds feasible trials only."""
    tune = """\
tune:
  also: [seconds_per_step]
  space: {model.couplings: {low: 2, high: 8}}
  sampler: {kind: random, seed: 0}
  constraints: {inversion_error: 1.0e-2}
  trials: 4
  parallel: 2
"""
    result = _invoke("tune", str(_write(tmp_path, tune, name="pareto", steps=20)), "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["objectives"] == ["nats", "seconds_per_step"] and shown["counts"] == {"complete": 4}
    assert shown["best"] and all(b["feasible"] and len(b["values"]) == 2 for b in shown["best"])
    study = optuna.load_study(study_name=shown["name"], storage=_journal(home))
    assert all(set(t.constraints) == {"inversion_error"} for t in study.trials)
    db = sqlite3.connect(home / "nflab.db")
    statuses = [
        s for (s,) in db.execute("select status from nflab_runs where campaign_id = ?", (shown["campaign_id"],))
    ]
    assert statuses == ["finished"] * 4
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id], max_results=100)]
    assert sorted(r.data.tags["nflab.trial"] for r in runs if "nflab.trial" in r.data.tags) == ["0", "1", "2", "3"]
    assert any(p.endswith("pareto.png") for p in shown["plots"])


@pytest.mark.slow
def test_kill_9_the_driver_then_resume(home: Path, tmp_path: Path, ray_local: None) -> None:
    """A real ``nflab tune`` process (with its own local Ray) is SIGKILLed while a trial runs; running the pipeline
    again keeps the finished trials, re-enqueues the interrupted one and honours the total."""
    import os
    import signal
    import subprocess
    import sys
    import time

    tune = """\
tune:
  space: {train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}}
  sampler: {kind: random, seed: 0}
  pruner: {kind: none}
  trials: 3
  parallel: 1
"""
    path = _write(tmp_path, tune, name="killed", steps=400)
    cmd = [sys.executable, "-c", "from nflab.cli import main; main()", "tune", str(path)]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            time.sleep(1)
            if not (home / "optuna.journal").exists():
                continue
            storage = _journal(home)
            names = optuna.get_all_study_names(storage)
            if names:
                trials = optuna.load_study(study_name=names[0], storage=storage).trials
                states = [t.state.name for t in trials]
                if states.count("COMPLETE") >= 1 and "RUNNING" in states:
                    break
        else:
            pytest.fail("the study never had a finished and a running trial")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
        proc.wait()
    result = _invoke("tune", str(path), "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    states = [t["state"] for t in shown["trials"]]
    assert states.count("interrupted") == 1 and states.count("complete") == 3


def test_a_trial_no_node_can_host_is_refused_before_anything_is_written(
    home: Path, tmp_path: Path, ray_local: None
) -> None:
    path = _write(tmp_path, "tune:\n  space: {train.lr: {low: 1.0e-4, high: 1.0e-2}}\n", name="too-big")
    path.write_text(path.read_text().replace("cpu: 1,", "cpu: 64,"))
    result = _invoke("tune", str(path))
    assert result.exit_code == 2 and "resources.cpu: 64 is more than any node" in result.output, result.output
    assert not (home / "optuna.journal").exists() and not (home / "nflab.db").exists()
