"""Run storage URIs (checked, joined, local folders written atomically) and the driver's longest-first order."""

from __future__ import annotations

from pathlib import Path

import pytest

from nflab.settings import SettingsError, load_settings
from nflab.workers.ray_exec import budget, longest_first
from nflab.workers.storage import Folder, StorageError, check_uri, is_remote, join


def test_local_paths_and_uris() -> None:
    assert check_uri("relative/runs") == str(Path("relative/runs").resolve())
    assert check_uri("file:///tmp/x/") == "/tmp/x"
    assert check_uri("s3://bucket/prefix/?endpoint_override=h:9&scheme=http") == (
        "s3://bucket/prefix/?endpoint_override=h:9&scheme=http"
    )
    assert is_remote("gs://b/p") and not is_remote("/tmp/x") and not is_remote("file:///tmp/x")
    assert join("s3://b/p?endpoint_override=h:9", "c1", "r0") == "s3://b/p/c1/r0?endpoint_override=h:9"
    assert join("/tmp/runs", "c1") == "/tmp/runs/c1"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("ftp://host/x", "unknown scheme"),
        ("s3://AKIA:SECRET@bucket/x", "carries credentials"),
        ("s3://bucket/x?access_key=AKIA&secret_key=SECRET", "carries credentials"),
        ("s3://", "names no bucket"),
        ("file://relative", "absolute"),
    ],
)
def test_bad_values_are_one_line_without_secrets(value: str, why: str) -> None:
    with pytest.raises(StorageError) as err:
        check_uri(value)
    text = str(err.value)
    assert text.startswith("NFLAB_STORAGE: ") and why in text and "allowed:" in text
    assert "SECRET" not in text and "\n" not in text


def test_gs_query_builds_a_gcs_filesystem() -> None:
    """``gs://``: pyarrow's GcsFileSystem from the query, ``anonymous=true`` included (no network is touched)."""
    import pyarrow.fs as pafs

    from nflab.workers.storage import _filesystem

    query = "endpoint_override=127.0.0.1:9&scheme=http&anonymous=true&retry_limit_seconds=2&project_id=p&location=EU"
    assert check_uri(f"gs://bkt/pre/fix?{query}") == f"gs://bkt/pre/fix?{query}"  # anonymous is no credential
    fs, path = _filesystem(f"gs://bkt/pre/fix?{query}")
    assert isinstance(fs, pafs.GcsFileSystem) and path == "bkt/pre/fix"
    options = fs.__reduce__()[1][0]
    assert options["anonymous"] and options["scheme"] == "http" and options["endpoint_override"] == "127.0.0.1:9"
    assert options["retry_time_limit"].total_seconds() == 2 and options["project_id"] == "p"
    assert options["default_bucket_location"] == "EU"


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("anonymous=yes", "anonymous is true or false"),
        ("retry_limit_seconds=0", "retry_limit_seconds"),
        ("retry_limit_seconds=soon", "retry_limit_seconds"),
        ("colour=blue", "unknown query key 'colour'"),
    ],
)
def test_bad_gs_queries_are_one_line(query: str, why: str) -> None:
    from nflab.workers.storage import _filesystem

    with pytest.raises(StorageError) as err:
        _filesystem(f"gs://bkt/x?anonymous=true&{query}")
    text = str(err.value)
    assert text.startswith("NFLAB_STORAGE: 'gs://bkt/x' cannot be opened") and why in text and "\n" not in text


@pytest.mark.parametrize("query", ["access_token=SECRET", "credentials=SECRET", "private_key_token=SECRET"])
def test_gs_credentials_in_the_query_are_refused(query: str) -> None:
    with pytest.raises(StorageError, match="carries credentials") as err:
        check_uri(f"gs://bkt/x?anonymous=true&{query}")
    assert "SECRET" not in str(err.value)


def test_setting_defaults_under_home_and_refuses_bad_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NFLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NFLAB_STORAGE", raising=False)
    assert load_settings().storage == str((tmp_path / "home" / "runs").resolve())
    monkeypatch.setenv("NFLAB_STORAGE", "s3://bucket/nflab")
    assert load_settings().storage == "s3://bucket/nflab"
    monkeypatch.setenv("NFLAB_STORAGE", "hdfs:/broken")
    with pytest.raises(SettingsError, match="NFLAB_STORAGE"):
        load_settings()


def test_local_folder_put_get_and_listing(tmp_path: Path) -> None:
    folder = Folder.of(str(tmp_path / "runs" / "c1"))
    assert not folder.remote and folder.names() == []
    src = tmp_path / "a.txt"
    src.write_text("hello")
    uri = folder.child("r0").put(src, "config.json")
    assert uri == (tmp_path / "runs" / "c1" / "r0" / "config.json").as_uri()
    (folder.local / "r0" / ".tmp-step_1.pt-x").write_text("half")  # an interrupted write is never listed
    assert folder.child("r0").names() == ["config.json"]
    assert folder.child("r0").read_text("config.json") == "hello"
    assert folder.child("r0").read_text("missing") is None


def test_runs_are_ordered_longest_first_by_declared_budget() -> None:
    def spec(key: str, steps: int, batch: int) -> dict:
        return {"run_key": key, "config": {"train": {"steps": steps, "batch_size": batch}}}

    specs = [spec("a", 100, 10), spec("b", 1000, 10), spec("c", 100, 10), spec("d", 10, 500)]
    assert [s["run_key"] for s in longest_first(specs)] == ["b", "d", "a", "c"]  # ties keep their order
    assert budget({"run_key": "x", "config": {}}) == 0.0
