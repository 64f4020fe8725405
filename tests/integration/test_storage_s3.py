"""Run storage on a real S3-compatible server (moto on 127.0.0.1): atomic files, one-line errors, and a run that
crashes on one "node" (scratch folder) resumes on another from the newest checkpoint in storage, bit-identically.
The cases shared with ``gs://`` are in ``tests/storagecases.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nflab.workers.storage import StorageError, check_uri
from tests import storagecases as cases
from tests.s3server import S3Server

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    yield from cases.serve("s3", tmp_path_factory)


@pytest.fixture
def s3_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    return cases.in_env(s3, monkeypatch)


def test_folder_put_is_atomic_and_lists_only_whole_files(s3_env: S3Server, tmp_path: Path, monkeypatch) -> None:
    cases.put_is_atomic_and_lists_only_whole_files(s3_env, tmp_path, monkeypatch)


def test_readers_see_only_whole_files(s3_env: S3Server, tmp_path: Path) -> None:
    cases.readers_see_only_whole_files(s3_env, tmp_path)


def test_bad_and_unreachable_storage_are_one_line(s3_env: S3Server) -> None:
    for bad in ("ftp://host/x", "s3://KEY:SECRET@bucket/x", "s3://bucket/x?secret_key=SECRET", "s3:/x"):
        with pytest.raises(StorageError) as err:
            check_uri(bad)
        text = str(err.value)
        assert text.startswith("NFLAB_STORAGE: ") and "allowed:" in text and "SECRET" not in text
        assert "\n" not in text
    cases.unreachable_and_missing_bucket_are_one_line(s3_env)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("ftp://host/x", "unknown scheme"), ("s3://bucket/x?secret_key=abc", "carries credentials")],
)
def test_cli_refuses_a_bad_storage_setting(value: str, expected: str, tmp_path: Path, monkeypatch) -> None:
    from nflab.cli import app

    monkeypatch.setenv("NFLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NFLAB_STORAGE", value)
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 2
    assert "NFLAB_STORAGE" in result.stderr and expected in result.stderr and "allowed:" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "abc" not in result.stderr


def test_run_resumes_on_another_node_from_storage(
    s3_env: S3Server, make_spec, tmp_path: Path, mlflow_uri: str, experiment: str, monkeypatch
) -> None:
    cases.run_resumes_on_another_node_from_storage(s3_env, make_spec, tmp_path, mlflow_uri, experiment, monkeypatch)
