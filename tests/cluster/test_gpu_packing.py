"""Fractional GPUs on declared GPUs: a worker node started with ``--num-gpus 2`` (logical GPUs on this CPU machine)
runs four ``resources.gpu: 0.5`` runs at once, two per GPU, each task with its own ``CUDA_VISIBLE_DEVICES``; with
no CUDA here each run says so in its log and trains on CPU."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import torch

from tests.raycluster import RayCluster, ray_cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # about 2 min on 2 cores: a cluster, 4 fresh GPU workers

NFLAB = str(Path(sys.executable).with_name("nflab"))
PIPELINE = """\
name: gpu-pack
dataset: {name: 8gaussians, test_samples: 300}
model: {family: realnvp, preset: small}
train: {steps: 150, batch_size: 64, eval_every: 150, checkpoint_every: 150, log_every: 50}
eval: {batch_size: 300, exact: true}
resources: {cpu: 1, gpu: 0.5, retries: 0}
matrix:
  train.seed: [0, 1, 2, 3]
"""


@pytest.fixture(scope="module")
def gpu_cluster() -> Iterator[RayCluster]:
    with ray_cluster(num_cpus=0) as cluster:
        cluster.add_worker(num_cpus=4, num_gpus=2)
        yield cluster


def _stamp(line: str) -> datetime:
    return datetime.strptime(line[:19], "%Y-%m-%d %H:%M:%S")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback; this machine has CUDA")
def test_four_half_gpu_runs_pack_onto_two_declared_gpus(gpu_cluster: RayCluster, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = gpu_cluster.client_env({**os.environ, "NFLAB_HOME": str(home)})
    for var in ("RAY_ADDRESS", "NFLAB_DB_URL", "MLFLOW_TRACKING_URI", "NFLAB_STORAGE"):
        env.pop(var, None)
    pipeline = tmp_path / "gpu.yaml"
    pipeline.write_text(PIPELINE)
    done = subprocess.run(
        [NFLAB, "run", str(pipeline), "--address", gpu_cluster.gcs_address, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert len(out["runs"]) == 4 and {r["status"] for r in out["runs"]} == {"finished"}

    logs = [p.read_text() for p in (home / "runs" / out["campaign_id"]).glob("*/train.log")]
    assert len(logs) == 4
    devices = Counter(re.search(r"CUDA_VISIBLE_DEVICES=(\S+?),", text).group(1) for text in logs)
    assert sorted(devices.values()) == [2, 2] and len(devices) == 2, devices  # two runs on each of two GPUs
    for text in logs:
        assert "resources.gpu=0.5" in text and "CUDA is not available here: training on CPU" in text
    starts = [_stamp(next(li for li in t.splitlines() if " start run " in li)) for t in logs]
    ends = [_stamp(next(li for li in t.splitlines() if " finished after " in li)) for t in logs]
    assert max(starts) <= min(ends), "the four runs did not run at the same time"
