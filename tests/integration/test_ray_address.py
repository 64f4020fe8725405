"""Which Ray ``nflab run`` uses (issue 17, item 3): no address → always a new local Ray, never a cluster that Ray's temp
folder remembers (a live one of somebody else, or a dead one it would retry for minutes); a configured address
that cannot be reached → one line, exit 2, within seconds; an explicit GCS address of a token cluster works with
the token from Ray's sources (here RAY_AUTH_TOKEN_PATH, without RAY_AUTH_MODE).

The end-to-end ``nflab run`` variants against a real ``ray start`` head are marked slow; the default suite keeps
the driver-level check (``ensure_ray`` against a dead recorded cluster) and the unusable-address errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.raycluster import RayCluster, free_port

pytestmark = pytest.mark.timeout(600)

PIPELINE = """\
name: address-toy
dataset: {name: moons, test_samples: 200}
model: {family: maf, preset: small}
train: {steps: 10, batch_size: 64, eval_every: 10, checkpoint_every: 10, log_every: 5, seed: 0}
eval: {batch_size: 200, exact: true}
resources: {cpu: 1, gpu: 0, retries: 0}
"""


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(PIPELINE)
    return path


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short folder (Ray puts unix sockets under RAY_TMPDIR)."""
    folder = Path(tempfile.mkdtemp(prefix="nfrt-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def client_env(cluster: RayCluster, home: Path, **extra: str) -> dict[str, str]:
    drop = ("RAY_ADDRESS", "NFLAB_DB_URL", "MLFLOW_TRACKING_URI", "RAY_TMPDIR")
    env = {k: v for k, v in cluster.client_env(token="file").items() if k not in drop}
    return {**env, "NFLAB_HOME": str(home), **extra}


def nflab_run(env: dict[str, str], *args: str, timeout: float = 240) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "nflab.cli", "run", *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    return out, time.monotonic() - started


def driver_entrypoints(cluster: RayCluster) -> list[str]:
    """The drivers that ever connected to the cluster (Ray lists them as DRIVER jobs)."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(cluster.dashboard_url, headers={"Authorization": f"Bearer {cluster.token}"})
    return [job.entrypoint for job in client.list_jobs() if job.type.value == "DRIVER"]


ATTACH = """
import ray
from nflab.workers import ensure_ray
ensure_ray()
print(ray.get_runtime_context().gcs_address)
"""


@pytest.mark.slow  # about 22 s: a real `ray start --head`, stopped, then a local Ray started beside its leftovers
def test_ensure_ray_ignores_a_dead_cluster_in_rays_temp_folder(short_tmp: Path) -> None:
    """The driver's Ray, without an address, while Ray's temp folder records a dead cluster (a bare ``ray.init()``
    retried its GCS for minutes): a new local Ray, in seconds."""
    dead = f"127.0.0.1:{free_port()}"
    (short_tmp / "ray").mkdir()
    (short_tmp / "ray" / "ray_current_cluster").write_text(dead)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run(
        [sys.executable, "-c", ATTACH],
        capture_output=True,
        text=True,
        env={**env, "RAY_TMPDIR": str(short_tmp)},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    address = out.stdout.strip().splitlines()[-1]
    assert address and address.rpartition(":")[2] != dead.rpartition(":")[2]


@pytest.mark.slow
@pytest.mark.parametrize("recorded", ["live", "dead"])
def test_run_without_an_address_starts_its_own_local_ray(
    ray_head: RayCluster, pipeline: Path, tmp_path: Path, short_tmp: Path, recorded: str
) -> None:
    """Ray's temp folder (RAY_TMPDIR) records the running head, or a dead address: ``nflab run`` ignores both."""
    address = ray_head.gcs_address if recorded == "live" else f"127.0.0.1:{free_port()}"
    (short_tmp / "ray").mkdir()
    (short_tmp / "ray" / "ray_current_cluster").write_text(address)
    env = client_env(ray_head, tmp_path / "home", RAY_TMPDIR=str(short_tmp))
    out, _ = nflab_run(env, str(pipeline), "--json", timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert [r["status"] for r in json.loads(out.stdout)["runs"]] == ["finished"]
    assert not [e for e in driver_entrypoints(ray_head) if str(pipeline) in e]


@pytest.mark.slow
def test_an_explicit_cluster_address_uses_the_token(ray_head: RayCluster, pipeline: Path, tmp_path: Path) -> None:
    """``--address host:port`` of a token cluster, the token in RAY_AUTH_TOKEN_PATH and RAY_AUTH_MODE unset."""
    env = client_env(ray_head, tmp_path / "home")
    assert "RAY_AUTH_MODE" not in env and "RAY_AUTH_TOKEN_PATH" in env
    out, _ = nflab_run(env, str(pipeline), "--address", ray_head.gcs_address, "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    assert [r["status"] for r in json.loads(out.stdout)["runs"]] == ["finished"]
    assert [e for e in driver_entrypoints(ray_head) if str(pipeline) in e]


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("--address", "cannot be reached"),
        ("RAY_ADDRESS=ray://", "cannot be reached"),
        ("RAY_ADDRESS=http://", "is a Jobs API (dashboard) address"),
    ],
)
def test_an_unusable_address_is_one_line_and_exit_2_within_seconds(
    pipeline: Path, tmp_path: Path, how: str, expected: str
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "NFLAB_DB_URL", "MLFLOW_TRACKING_URI")}
    env["NFLAB_HOME"] = str(tmp_path / "home")
    args = [str(pipeline)]
    if how == "--address":
        args += ["--address", dead]
    else:
        env["RAY_ADDRESS"] = how.split("=", 1)[1] + dead
    out, elapsed = nflab_run(env, *args, timeout=120)
    assert out.returncode == 2, out.stderr[-3000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Ray address: "), out.stderr
    assert expected in lines[0] and "allowed" in lines[0]
    assert elapsed < 60  # the CLI's own start-up on a busy 2-core machine; the probe itself takes ≤ 3 s
