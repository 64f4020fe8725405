"""Run storage on a real Google Cloud Storage emulator (gcp-storage-emulator on 127.0.0.1), reached by pyarrow's
GcsFileSystem through ``gs://bucket/prefix?endpoint_override=127.0.0.1:PORT&scheme=http&anonymous=true&
retry_limit_seconds=5``: the cases every remote storage passes (``tests/storagecases.py``, also run on S3), and
what is particular to GCS — it has no rename, so a move is a server-side copy then a delete."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest

from nflab.workers.storage import Folder
from tests import storagecases as cases
from tests.gcsserver import GcsServer

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsServer]:
    yield from cases.serve("gcs", tmp_path_factory)


@pytest.fixture
def gcs_env(gcs: GcsServer, monkeypatch: pytest.MonkeyPatch) -> GcsServer:
    return cases.in_env(gcs, monkeypatch)


def test_folder_put_is_atomic_and_lists_only_whole_files(gcs_env: GcsServer, tmp_path: Path, monkeypatch) -> None:
    cases.put_is_atomic_and_lists_only_whole_files(gcs_env, tmp_path, monkeypatch)


def test_readers_see_only_whole_files(gcs_env: GcsServer, tmp_path: Path) -> None:
    cases.readers_see_only_whole_files(gcs_env, tmp_path)


def test_a_move_is_a_server_side_copy_then_a_delete(gcs_env: GcsServer, tmp_path: Path) -> None:
    """GCS has no rename: pyarrow uploads to the temporary key, rewrites it onto the final key on the server (one
    request: the final object appears whole) and only then deletes the temporary one. Read off the emulator's
    request log."""
    folder = Folder.of(gcs_env.uri("unit/move"))
    src = tmp_path / "m.bin"
    src.write_bytes(b"m" * 200_000)
    mark = gcs_env.log.stat().st_size
    folder.put(src, "step_00000001.pt")
    log = gcs_env.log.read_bytes()[mark:].decode(errors="replace")
    writes = [(m, unquote(p)) for m, p in re.findall(r'"(POST|PUT|PATCH|DELETE) (\S+) HTTP', log)]
    tmp = next(p for _, p in writes if "name=unit/move/.tmp-step_00000001.pt-" in p)
    tmp = "unit/move/" + re.search(r"\.tmp-step_00000001\.pt-[0-9a-f]+", tmp)[0]
    final = "unit/move/step_00000001.pt"
    uploads = [p for m, p in writes if p.startswith("/upload/")]
    assert uploads and all(f"name={tmp}" in p for p in uploads), writes  # the bytes only ever go to the temporary key
    rewrite = f"/storage/v1/b/{gcs_env.bucket}/o/{tmp}/rewriteTo/b/{gcs_env.bucket}/o/{final}"
    delete = f"/storage/v1/b/{gcs_env.bucket}/o/{tmp}"
    assert [(m, p) for m, p in writes if final in p] == [("POST", rewrite)], writes
    assert writes[-2:] == [("POST", rewrite), ("DELETE", delete)], writes
    assert folder.names() == ["step_00000001.pt"]
    folder.delete("step_00000001.pt")


def test_unreachable_and_missing_bucket_are_one_line(gcs_env: GcsServer) -> None:
    cases.unreachable_and_missing_bucket_are_one_line(gcs_env)


def test_run_resumes_on_another_node_from_storage(
    gcs_env: GcsServer, make_spec, tmp_path: Path, mlflow_uri: str, experiment: str, monkeypatch
) -> None:
    cases.run_resumes_on_another_node_from_storage(gcs_env, make_spec, tmp_path, mlflow_uri, experiment, monkeypatch)
