"""The cases every remote run storage must pass, written once and run on each real server: S3 (moto, in
``tests/integration/test_storage_s3.py``) and GCS (the emulator, in ``tests/integration/test_storage_gcs.py``).

A server is an :class:`~tests.s3server.S3Server` or a :class:`~tests.gcsserver.GcsServer`: both give ``uri(prefix,
bucket=…)``, ``dead_uri(prefix)`` (an endpoint nobody listens on, short limits), ``scheme``, ``bucket`` and the
``env`` its clients need. :func:`serve` starts one for a test module.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from mlflow.tracking import MlflowClient

from nflab.workers import execute_run
from nflab.workers.storage import SCRATCH_ENV, Folder, StorageError, probe
from nflab.workers.train import SimulatedCrash
from tests import gcsserver, s3server

Server = s3server.S3Server | gcsserver.GcsServer
_STARTERS = {
    "s3": (s3server.s3_server, s3server.skip_reason),
    "gcs": (gcsserver.gcs_server, gcsserver.skip_reason),
}


def serve(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The ``kind`` (``s3``/``gcs``) server for a module's tests (skipped where it is not installed)."""
    start, skip_reason = _STARTERS[kind]
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    with start(tmp_path_factory.mktemp(kind)) as server:
        yield server


def in_env(server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    """``server`` with its clients' environment set for one test."""
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    return server


def put_is_atomic_and_lists_only_whole_files(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """put/list/get/delete; an upload that dies before its move, and a crashed uploader's temporary key, leave
    nothing under a final name."""
    folder = Folder.of(server.uri("unit/folder"))
    assert folder.remote and folder.names() == []
    src = tmp_path / "a.bin"
    src.write_bytes(b"x" * 100_000)
    uri = folder.put(src, "step_00000010.pt")
    assert uri == f"{server.scheme}://{server.bucket}/unit/folder/step_00000010.pt"
    assert folder.names() == ["step_00000010.pt"]

    import nflab.workers.storage as storage

    fs, root = storage._filesystem(folder.uri)

    class MoveFails:  # the uploader dies after the bytes went to the temporary key, before the move
        def __getattr__(self, name: str) -> object:
            return getattr(fs, name)

        def move(self, src: str, dst: str) -> None:
            raise OSError("killed before the move")

    with fs.open_output_stream(f"{root}/.tmp-step_00000030.pt-dead") as out:  # a crashed uploader's leftover
        out.write(b"half")
    key = next(k for k, v in storage._FS_CACHE.items() if v is fs)
    monkeypatch.setitem(storage._FS_CACHE, key, MoveFails())
    with pytest.raises(OSError, match="before the move"):
        folder.put(src, "step_00000020.pt")
    monkeypatch.setitem(storage._FS_CACHE, key, fs)
    assert folder.names() == ["step_00000010.pt"]
    back = tmp_path / "back.bin"
    assert folder.get("step_00000010.pt", back) and back.read_bytes() == src.read_bytes()
    assert not folder.get("missing.pt", tmp_path / "missing")
    folder.delete("step_00000010.pt")
    folder.delete("step_00000010.pt")  # missing is fine
    assert folder.names() == []


def readers_see_only_whole_files(server: Server, tmp_path: Path) -> None:
    """While one writer replaces a file again and again (a move onto an existing key: on GCS a server-side copy,
    then a delete), a reader that lists and reads it sees only whole versions, never a temporary key."""
    folder = Folder.of(server.uri("unit/readers"))
    versions = [bytes([65 + i]) * (150_000 + 10_000 * i) for i in range(5)]  # A…, B…: each a whole, distinct file
    seen: list[bytes] = []
    listed: set[str] = set()
    done = threading.Event()
    failures: list[BaseException] = []

    def read() -> None:
        try:
            while not done.is_set():
                listed.update(folder.names())
                back = tmp_path / "read.bin"
                if folder.get("ckpt.pt", back):
                    seen.append(back.read_bytes())
        except BaseException as exc:  # reported by the test's thread
            failures.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        for i, data in enumerate(versions):
            src = tmp_path / f"v{i}.bin"
            src.write_bytes(data)
            folder.put(src, "ckpt.pt")
            time.sleep(0.05)
    finally:
        done.set()
        reader.join(timeout=60)
    assert not failures, failures
    assert not reader.is_alive()
    assert listed <= {"ckpt.pt"}, listed
    assert seen, "the reader never saw the file"
    torn = [(len(d), d[:1], d[-1:], sorted(set(d))) for d in seen if d not in versions]
    assert not torn, torn
    back = tmp_path / "last.bin"
    assert folder.get("ckpt.pt", back) and back.read_bytes() == versions[-1]
    folder.delete("ckpt.pt")


def unreachable_and_missing_bucket_are_one_line(server: Server) -> None:
    """probe: a dead endpoint and a bucket that does not exist are each one line naming NFLAB_STORAGE, quickly."""
    probe(server.uri("probe/ok"))  # an existing bucket, nothing under the prefix yet: fine
    for uri, why in (
        (server.dead_uri("x"), r"cannot be (reached|opened)"),
        (server.uri("x", bucket="no-such-bucket"), "names a bucket that does not exist"),
    ):
        started = time.monotonic()
        with pytest.raises(StorageError, match=rf"^NFLAB_STORAGE: .* ({why})") as err:
            probe(uri)
        assert time.monotonic() - started < 20, uri
        text = str(err.value)
        assert "\n" not in text and "allowed:" in text


def run_resumes_on_another_node_from_storage(
    server: Server, make_spec: Any, tmp_path: Path, mlflow_uri: str, experiment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run crashes on node A after its step-20 checkpoint reached storage; on node B (another scratch folder,
    nothing of the run on its disk) it fetches that checkpoint and ends bit-identical to an uninterrupted run."""
    run_key = f"{server.scheme}-r0"
    spec = make_spec(run_key, train__steps=60, train__eval_every=15, train__checkpoint_every=20, train__log_every=5)
    kw = {"tracking_uri": mlflow_uri, "experiment_name": experiment}
    reference = execute_run(spec, workdir=tmp_path / "ref", nflab_run_id="ref", **kw)
    assert reference["status"] == "finished", reference["error"]

    storage = server.uri("campaigns/c1")
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "node-a"))
    with pytest.raises(SimulatedCrash):
        execute_run(spec, workdir=storage, nflab_run_id="remote-run", stop_after_step=30, **kw)
    ckpts = Folder.of(storage).child(run_key, "checkpoints").names()
    assert "step_00000020.pt" in ckpts and all(not n.startswith(".tmp") for n in ckpts)

    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "node-b"))  # another node: nothing of the run on its disk
    done = execute_run(spec, workdir=storage, nflab_run_id="remote-run", **kw)
    assert done["status"] == "finished", done["error"]
    assert done["resumed_from"] == 20 and done["steps"] == 60
    assert done["results"] == reference["results"]
    prefix = f"{server.scheme}://{server.bucket}/campaigns/c1/{run_key}/checkpoints/"
    assert all(c["uri"].startswith(prefix) for c in done["checkpoints"])
    assert done["artifacts"] and all(a.startswith(f"{server.scheme}://") for a in done["artifacts"])
    assert not (tmp_path / "node-b").exists() or not any((tmp_path / "node-b").rglob("*.pt"))  # scratch dropped

    final = Folder.of(storage).child(run_key, "checkpoints")
    local = tmp_path / "final.pt"
    assert final.get("step_00000060.pt", local)
    ours = torch.load(local, weights_only=False)
    ref = torch.load(tmp_path / "ref" / run_key / "checkpoints" / "step_00000060.pt", weights_only=False)
    for key, tensor in ref["model"].items():
        assert torch.equal(tensor, ours["model"][key]), key
    log = Folder.of(storage).child(run_key).read_text("train.log") or ""
    assert "fetched the checkpoint of step 20 from run storage" in log

    client = MlflowClient(mlflow_uri)
    for key in ("train_loss", "val_nats", "best_nats"):
        ours_h = sorted((m.step, m.value) for m in client.get_metric_history(done["mlflow_run_id"], key))
        ref_h = sorted((m.step, m.value) for m in client.get_metric_history(reference["mlflow_run_id"], key))
        assert ours_h == ref_h, key
        assert len({s for s, _ in ours_h}) == len(ours_h)
