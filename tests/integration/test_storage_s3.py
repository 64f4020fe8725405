"""Run storage on a real S3-compatible server (moto on 127.0.0.1): atomic files, and a run that crashes on one
"node" (scratch folder) resumes on another from the newest checkpoint in storage, bit-identically."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from nflab.workers import execute_run
from nflab.workers.storage import SCRATCH_ENV, Folder, StorageError, check_uri, probe
from nflab.workers.train import SimulatedCrash
from tests.s3server import S3Server, s3_server, skip_reason

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def s3_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    return s3


def test_folder_put_is_atomic_and_lists_only_whole_files(s3_env: S3Server, tmp_path: Path, monkeypatch) -> None:
    folder = Folder.of(s3_env.uri("unit/folder"))
    assert folder.remote and folder.names() == []
    src = tmp_path / "a.bin"
    src.write_bytes(b"x" * 100_000)
    uri = folder.put(src, "step_00000010.pt")
    assert uri == f"s3://{s3_env.bucket}/unit/folder/step_00000010.pt"
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
    assert folder.names() == []


def test_bad_and_unreachable_storage_are_one_line(s3_env: S3Server) -> None:
    for bad in ("ftp://host/x", "s3://KEY:SECRET@bucket/x", "s3://bucket/x?secret_key=SECRET", "s3:/x"):
        with pytest.raises(StorageError) as err:
            check_uri(bad)
        text = str(err.value)
        assert text.startswith("NFLAB_STORAGE: ") and "allowed:" in text and "SECRET" not in text
        assert "\n" not in text
    with pytest.raises(StorageError, match=r"NFLAB_STORAGE: .* cannot be (reached|opened)"):
        probe("s3://nflab-test/x?endpoint_override=127.0.0.1:9&scheme=http&connect_timeout=1&request_timeout=1")


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
    spec = make_spec("s3-r0", train__steps=60, train__eval_every=15, train__checkpoint_every=20, train__log_every=5)
    kw = {"tracking_uri": mlflow_uri, "experiment_name": experiment}
    reference = execute_run(spec, workdir=tmp_path / "ref", nflab_run_id="ref", **kw)
    assert reference["status"] == "finished", reference["error"]

    storage = s3_env.uri("campaigns/c1")
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "node-a"))
    with pytest.raises(SimulatedCrash):
        execute_run(spec, workdir=storage, nflab_run_id="s3run", stop_after_step=30, **kw)
    ckpts = Folder.of(storage).child("s3-r0", "checkpoints").names()
    assert "step_00000020.pt" in ckpts and all(not n.startswith(".tmp") for n in ckpts)

    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "node-b"))  # another node: nothing of the run on its disk
    done = execute_run(spec, workdir=storage, nflab_run_id="s3run", **kw)
    assert done["status"] == "finished", done["error"]
    assert done["resumed_from"] == 20 and done["steps"] == 60
    assert done["results"] == reference["results"]
    assert all(c["uri"].startswith("s3://nflab-test/campaigns/c1/s3-r0/checkpoints/") for c in done["checkpoints"])
    assert done["artifacts"] and all(a.startswith("s3://") for a in done["artifacts"])
    assert not (tmp_path / "node-b").exists() or not any((tmp_path / "node-b").rglob("*.pt"))  # scratch dropped

    final = Folder.of(storage).child("s3-r0", "checkpoints")
    local = tmp_path / "final.pt"
    assert final.get("step_00000060.pt", local)
    ours = torch.load(local, weights_only=False)
    ref = torch.load(tmp_path / "ref" / "s3-r0" / "checkpoints" / "step_00000060.pt", weights_only=False)
    for key, tensor in ref["model"].items():
        assert torch.equal(tensor, ours["model"][key]), key
    log = Folder.of(storage).child("s3-r0").read_text("train.log") or ""
    assert "fetched the checkpoint of step 20 from run storage" in log

    client = MlflowClient(mlflow_uri)
    for key in ("train_loss", "val_nats", "best_nats"):
        ours_h = sorted((m.step, m.value) for m in client.get_metric_history(done["mlflow_run_id"], key))
        ref_h = sorted((m.step, m.value) for m in client.get_metric_history(reference["mlflow_run_id"], key))
        assert ours_h == ref_h, key
        assert len({s for s, _ in ours_h}) == len(ours_h)
