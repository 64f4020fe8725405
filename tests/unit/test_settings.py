"""Settings: embedded defaults under NFLAB_HOME, env overrides read at call time, redacted credentials."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nflab.settings import ENV_VARS, load_settings, redact, sqlite_path


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def test_defaults_follow_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NFLAB_HOME", str(tmp_path / "h"))
    s = load_settings()
    home = (tmp_path / "h").resolve()
    assert s.home == home
    assert s.db_url == f"sqlite:///{home / 'nflab.db'}"
    assert s.mlflow_tracking_uri == f"sqlite:///{home / 'mlflow.db'}"
    assert s.mlflow_artifact_root == home / "artifacts"
    assert s.ray_address is None
    assert s.optuna_url == str(home / "optuna.journal")
    assert s.data_root == home / "data"
    assert s.is_sqlite


def test_default_home_is_dot_nflab_in_cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings().home == (tmp_path / ".nflab").resolve()


def test_env_vars_override_and_are_read_at_call_time(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NFLAB_HOME", str(tmp_path))
    first = load_settings()
    monkeypatch.setenv("NFLAB_DB_URL", "postgresql+psycopg://u@db:5432/nflab")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    monkeypatch.setenv("NFLAB_OPTUNA_URL", "postgresql+psycopg://u@db:5432/optuna")
    monkeypatch.setenv("NFLAB_DATA", str(tmp_path / "datasets"))
    s = load_settings()
    assert first.db_url.startswith("sqlite:///")
    assert s.db_url == "postgresql+psycopg://u@db:5432/nflab"
    assert not s.is_sqlite
    assert s.mlflow_tracking_uri == "http://mlflow:5000"
    assert s.ray_address == "ray://head:10001"
    assert s.optuna_url == "postgresql+psycopg://u@db:5432/optuna"
    assert s.data_root == tmp_path / "datasets"


def test_empty_env_var_means_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NFLAB_HOME", str(tmp_path))
    monkeypatch.setenv("RAY_ADDRESS", "")
    monkeypatch.setenv("NFLAB_DB_URL", "  ")
    s = load_settings()
    assert s.ray_address is None
    assert s.db_url == f"sqlite:///{tmp_path.resolve() / 'nflab.db'}"


def test_explicit_overrides_win(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "ray://env:10001")
    s = load_settings(home=tmp_path / "x", ray_address="auto")
    assert s.ray_address == "auto"
    assert s.db_url.endswith(str(tmp_path.resolve() / "x" / "nflab.db"))
    with pytest.raises(ValueError, match="unknown settings"):
        load_settings(db="sqlite://")


def test_redacted_hides_passwords(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NFLAB_HOME", str(tmp_path))
    monkeypatch.setenv("NFLAB_DB_URL", "postgresql+psycopg://alice:s3cr3t-pw@db.example:5432/nflab")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://bob:hunter2@db.example/mlflow?sslmode=require")
    monkeypatch.setenv("NFLAB_OPTUNA_URL", "postgresql+psycopg://carol@db.example/optuna?password=topsecret")
    shown = load_settings().redacted()
    text = json.dumps(shown)
    for secret in ("s3cr3t-pw", "hunter2", "topsecret"):
        assert secret not in text
    assert shown["db_url"] == "postgresql+psycopg://alice:***@db.example:5432/nflab"
    assert shown["mlflow_tracking_uri"] == "postgresql://bob:***@db.example/mlflow?sslmode=require"
    assert shown["optuna_url"] == "postgresql+psycopg://carol@db.example/optuna?password=***"
    assert shown["ray_address"] is None
    assert shown["home"] == str(tmp_path.resolve())


def test_redact_leaves_urls_without_password_alone() -> None:
    for url in ("sqlite:////tmp/x.db", "http://mlflow:5000", "postgresql+psycopg://u@h/db", "ray://head:10001"):
        assert redact(url) == url


def test_ensure_dirs_creates_folders(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NFLAB_HOME", str(tmp_path / "home"))
    s = load_settings()
    s.ensure_dirs()
    for folder in (s.home, s.mlflow_artifact_root, s.data_root):
        assert folder.is_dir()
    assert sqlite_path(s.db_url) == s.home / "nflab.db"
    assert sqlite_path("sqlite://") is None
    assert sqlite_path("postgresql+psycopg://h/db") is None
