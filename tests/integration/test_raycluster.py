"""The test clusters themselves (tests/raycluster.py): a worker node joins a head, and stopping one cluster ends all
of its processes and none of another cluster's. Slow (two heads and a worker on 2 cores); the other cluster tests
rely on the same code every run."""

from __future__ import annotations

import pytest
import requests

from tests.raycluster import ray_cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_a_worker_joins_and_stop_ends_only_its_own_cluster() -> None:
    with ray_cluster() as other, ray_cluster() as cluster:
        cluster.add_worker(num_cpus=1)
        assert cluster._alive_nodes() == 2
        assert len(cluster.nodes) == 2 and cluster.processes()
        cluster.stop()
        assert cluster.processes() == []
        assert other.nodes[0].proc.poll() is None
        reply = requests.get(f"{other.dashboard_url}/api/version", headers={"Authorization": f"Bearer {other.token}"})
        assert reply.ok
