"""The CLI end to end on the embedded default: real local Ray, real MLflow (SQLite), real nflab SQLite store."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from nflab.cli import app, main

TOY = "name: x\ndataset: {name: moons}\nmodel: {family: resflow}\n"
PIPELINE = """\
name: cli-toy
dataset: {name: 8gaussians, test_samples: 500}
model: {family: realnvp, preset: small}
train: {steps: 40, batch_size: 128, eval_every: 20, checkpoint_every: 20, log_every: 10, seed: 0}
eval: {batch_size: 500, exact: true}
resources: {cpu: 1, gpu: 0, retries: 1}
matrix:
  model.family: [nice, realnvp]
  train.seed: [0, 1]
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("NFLAB_DB_URL", "MLFLOW_TRACKING_URI", "NFLAB_OPTUNA_URL", "NFLAB_DATA", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NFLAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _main(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, list[str]]:
    """The console entry point ``nflab.cli:main`` in this process (about 7 s less than a fresh interpreter importing
    torch): ``(exit status, non-blank lines of stderr)``; stderr is read at the file-descriptor level, as a shell
    would see it. :func:`test_the_console_entry_point_in_a_fresh_process` shows the fresh process agrees."""
    monkeypatch.setattr(sys, "argv", ["nflab", *args])
    capfd.readouterr()
    with pytest.raises(SystemExit) as exited:
        main()
    err = capfd.readouterr().err
    return exited.value.code, [line for line in err.splitlines() if line.strip()]


def test_run_status_leaderboard_logs(home: Path, tmp_path: Path, ray_local: None) -> None:
    pipeline = tmp_path / "toy.yaml"
    pipeline.write_text(PIPELINE)
    result = _invoke("run", str(pipeline), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    runs = out["runs"]
    assert len(runs) == 4 and {r["status"] for r in runs} == {"finished"}

    # the rows in SQLite are the ones the CLI reported, with best/final results per run
    db = sqlite3.connect(home / "nflab.db")
    stored = db.execute("select count(*) from nflab_runs where status='finished'").fetchone()[0]
    assert stored == 4
    metrics = db.execute(
        "select r.run_key, x.kind, x.value from nflab_results x join nflab_runs r on r.id = x.run_id "
        "where x.metric='nats' and x.split='test'"
    ).fetchall()
    kinds = ("best", "final", "mean")  # mean: the last-N average of the toy protocol
    assert {(k, kind) for k, kind, _ in metrics} == {(r["run_key"], kind) for r in runs for kind in kinds}

    # leaderboard: two configurations (nice, realnvp), each the mean of its 2 seeds as stored
    board = _invoke("leaderboard", "--dataset", "8gaussians", "--json", "--no-reference")
    assert board.exit_code == 0, board.output
    rows = json.loads(board.stdout)
    assert sorted(r["family"] for r in rows) == ["nice", "realnvp"]
    for row in rows:
        values = [
            v
            for k, kind, v in metrics
            if kind == "best" and next(r for r in runs if r["run_key"] == k)["family"] == row["family"]
        ]
        assert row["n_seeds"] == 2
        assert row["mean"] == pytest.approx(sum(values) / 2)

    html = tmp_path / "board.html"
    assert _invoke("leaderboard", "--html", str(html)).exit_code == 0
    assert "8gaussians" in html.read_text()

    # running the same pipeline again resumes the campaign: nothing to redo
    again = _invoke("run", str(pipeline), "--json")
    assert again.exit_code == 0
    assert json.loads(again.stdout)["campaign_id"] == out["campaign_id"]
    assert db.execute("select count(*) from nflab_runs").fetchone()[0] == 4

    status = _invoke("status", out["campaign_id"][:8], "--json")
    assert json.loads(status.stdout)["summary"]["finished"] == 4
    logs = _invoke("logs", runs[0]["id"][:12], "--json")
    assert logs.exit_code == 0 and json.loads(logs.stdout)["run"]["run_key"] == runs[0]["run_key"]


def test_nan_run_fails_with_reason_and_others_finish(home: Path, tmp_path: Path, ray_local: None) -> None:
    pipeline = tmp_path / "nan.yaml"
    pipeline.write_text(
        PIPELINE.replace("name: cli-toy", "name: cli-nan").replace(
            "  train.seed: [0, 1]", "  train.lr: [1.0e-3, 1.0e+30]"
        )
    )
    result = _invoke("run", str(pipeline), "--json")
    assert result.exit_code == 1
    runs = json.loads(result.stdout)["runs"]
    failed = [r for r in runs if r["status"] == "failed"]
    assert len(runs) == 4 and len(failed) == 2
    assert all("non-finite" in r["error"] for r in failed)
    assert all(r["config"]["train"]["lr"] > 1 for r in failed)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name: x\ndataset: {name: 8gaussians\n", "bad.yaml:"),
        ("name: x\ndataset: {name: 8gaussians}\nmodel: {family: monotne}\n", "bad.yaml:3 model.family: 'monotne'"),
        ("name: x\ndataset: {name: 8gaussians}\nmodel: {family: nice}\ntrain: {steps: many}\n", "train.steps"),
        ("name: x\ndataset: {name: cifar10}\nmodel: {family: glow}\n", "cifar10"),
        # non-finite numbers are bad input, never a default (YAML's .inf/.nan)
        (f"{TOY}train: {{lr: .inf}}\n", "train.lr: inf is not a finite number"),
        (f"{TOY}train: {{weight_decay: .inf}}\n", "train.weight_decay: inf is not a finite number"),
        (f"{TOY}estimator: {{poisson_lambda: .nan}}\n", "estimator.poisson_lambda: nan is not a finite number"),
        ("name: x\ndataset: {name: moons}\nmodel: {family: realnvp, alpha: .nan}\n", "model.alpha: nan is not a fin"),
        (f"{TOY}resources: {{cpu: .inf}}\n", "resources.cpu: inf is not a finite number"),
        # values that overflow the store's columns are refused before any row is written
        (f"name: {'n' * 300}\ndataset: {{name: moons}}\nmodel: {{family: nice}}\n", "has 300 characters"),
        (f"{TOY}train: {{seed: {10**40}}}\n", "train.seed"),
        # hostile YAML: an alias bomb, a recursive alias, deep nesting, a NUL byte
        (
            "name: x\na: &a [1,1,1,1,1,1,1,1,1,1]\n"
            + "".join(f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n" for p, n in zip("abcdefg", "bcdefgh")),
            "expands to more than",
        ),
        ("name: x\nmatrix: &m [*m]\n", "recursive alias"),
        ("name: x\ndataset: " + "[" * 2000 + "]" * 2000 + "\n", "nested too deeply"),
        ("name: x\x00\n", "unacceptable character"),
        # an option that means nothing for the data is refused, not ignored
        ("name: x\ndataset: {name: moons}\nmodel: {family: glow, levels: 2}\n", "model.levels: 2 is not meaningful"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    home: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, text: str,
    fragment: str,
) -> None:  # fmt: skip
    pipeline = tmp_path / "bad.yaml"
    pipeline.write_text(text)
    monkeypatch.setenv("NFLAB_DATA", str(tmp_path / "nodata"))
    code, lines = _main(capfd, monkeypatch, "run", str(pipeline))
    assert code == 2 and len(lines) == 1 and fragment in lines[0], lines
    assert not (home / "nflab.db").exists() and not (home / "mlflow.db").exists()


def test_the_console_entry_point_in_a_fresh_process(home: Path, tmp_path: Path) -> None:
    """``python -m nflab.cli`` as a user runs it: bad input and a usage error are one line on stderr, exit 2."""
    pipeline = tmp_path / "bad.yaml"
    pipeline.write_text("name: x\ndataset: {name: 8gaussians}\nmodel: {family: monotne}\n")
    env = {**os.environ, "NFLAB_HOME": str(home)}
    for args, fragment in (
        (["run", str(pipeline)], "bad.yaml:3 model.family: 'monotne'"),
        (["run", str(pipeline), "--bogus"], "No such option: --bogus (see `nflab run --help`)"),
    ):
        proc = subprocess.run([sys.executable, "-m", "nflab.cli", *args], capture_output=True, text=True, env=env)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and fragment in lines[0], proc.stderr
    assert not (home / "nflab.db").exists() and not (home / "mlflow.db").exists()


def test_read_commands(home: Path) -> None:
    shown = _invoke("config", "show", "--json")
    assert json.loads(shown.stdout)["home"] == str(home)
    models = json.loads(_invoke("models", "--json").stdout)
    assert {"nice", "realnvp", "glow", "maf"} <= set(models)
    assert models["glow"]["properties"]["depth"]["default"] == 32  # each family: the JSON Schema of its options
    assert _invoke("db", "upgrade").exit_code == 0
    assert (home / "nflab.db").exists()
    bad = CliRunner().invoke(app, ["leaderboard", "--metric", "accuracy"])
    assert bad.exit_code == 2


#: a subprocess that runs CLI commands one after the other and says, after each, whether torch has been imported
TORCH_PROBE = """\
import sys
from nflab.cli import main
for command in sys.argv[1:]:
    sys.argv = ["nflab", *command.split(), "--json"]
    try:
        main()
    except SystemExit as exc:
        print(f"{command}: exit {exc.code}, torch imported: {'torch' in sys.modules}")
"""
READ_ONLY = ("status", "leaderboard", "tune list", "repro list")


def test_read_only_commands_do_not_import_torch(home: Path) -> None:
    """Reading the store, the studies and the schedules needs neither the flow family nor torch (about 4 s of
    imports): the pipeline package loads its schema on first use, the store's migrations theirs when they run."""
    assert _invoke("db", "upgrade").exit_code == 0  # a fresh store's migrations may import what they need
    proc = subprocess.run([sys.executable, "-c", TORCH_PROBE, *READ_ONLY], capture_output=True, text=True, timeout=120)
    said = [line for line in proc.stdout.splitlines() if "torch imported" in line]
    assert said == [f"{c}: exit 0, torch imported: False" for c in READ_ONLY], proc.stdout[-600:] + proc.stderr[-800:]


def test_logs_show_the_run_log_and_the_failure_reason(home: Path, tmp_path: Path, ray_local: None) -> None:
    pipeline = tmp_path / "nan.yaml"
    pipeline.write_text(PIPELINE.replace("name: cli-toy", "name: cli-logs").replace("  train.seed: [0, 1]\n", ""))
    result = _invoke("run", str(pipeline), "--set", "train.lr=1.0e+9", "--set", "model.family=nice", "--json")
    assert result.exit_code == 1
    (run,) = json.loads(result.stdout)["runs"]
    shown = _invoke("logs", run["run_key"])
    assert shown.exit_code == 0
    assert "start run" in shown.stdout and "failed: non-finite loss" in shown.stdout
    assert run["error"] in shown.stdout


@pytest.mark.parametrize(
    ("resources", "fragment"),
    [("{cpu: 1000}", "resources.cpu: 1000 is more than any node"), ("{gpu: 1}", "resources.gpu: 1 is more than any")],
)
def test_resources_no_node_offers_are_refused_before_any_row(
    home: Path, tmp_path: Path, ray_local: None, resources: str, fragment: str
) -> None:
    pipeline = tmp_path / "big.yaml"
    pipeline.write_text(f"{TOY}train: {{steps: 5}}\nresources: {resources}\n")
    result = CliRunner().invoke(app, ["run", str(pipeline)])
    assert result.exit_code == 2 and fragment in result.stderr, result.output
    assert "largest: 2 CPUs, 0 GPUs" in result.stderr
    assert sqlite3.connect(home / "nflab.db").execute("select count(*) from nflab_campaigns").fetchone() == (0,)


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"NFLAB_DB_URL": "notaurl"}, "NFLAB_DB_URL: 'notaurl' is not a database URL"),
        ({"MLFLOW_TRACKING_URI": "foo://bar"}, "MLFLOW_TRACKING_URI: 'foo://bar' is not a tracking URI"),
        ({"NFLAB_HOME": "FILE"}, "is not a folder (it is a file)"),
        ({"NFLAB_DB_URL": "postgresql+psycopg://nflab:s3cret@127.0.0.1:1/none"}, "NFLAB_DB_URL: cannot use"),
    ],
)
def test_environment_mistakes_are_one_line_before_ray(
    home: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str], fragment: str,
) -> None:  # fmt: skip
    pipeline = tmp_path / "ok.yaml"
    pipeline.write_text(f"{TOY}train: {{steps: 5}}\n")
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("RAY_ADDRESS", "")
    for name, value in env.items():
        monkeypatch.setenv(name, str(tmp_path / "file") if value == "FILE" else value)
    code, lines = _main(capfd, monkeypatch, "run", str(pipeline))
    assert code == 2 and len(lines) == 1 and fragment in lines[0], lines
    assert "s3cret" not in lines[0] and "ray" not in lines[0].lower()  # no password, Ray never started


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["run", "x.yaml", "--bogus"], "No such option: --bogus (see `nflab run --help`)"),
        (["run"], "PIPELINE: missing; allowed: a pipeline file or catalog name, or --campaign ID"),
        (["bogus"], "No such command 'bogus'"),
        (["status", "nosuchcampaign"], "campaign: 'nosuchcampaign' is no campaign id"),
        (["logs", "nosuchrun"], "run: 'nosuchrun' is no run id"),
        (["leaderboard", "--html", "."], "is a folder; give a file path"),
    ],
)
def test_usage_and_lookup_errors_are_one_line_exit_2(
    home: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, args: list[str], fragment: str
) -> None:
    monkeypatch.chdir(home.parent)
    code, lines = _main(capfd, monkeypatch, *args)
    assert code == 2 and len(lines) == 1 and fragment in lines[0], lines
