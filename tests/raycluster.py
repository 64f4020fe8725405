"""Real Ray clusters for tests: ``ray start --head`` (and later ``ray start --address`` workers) on 127.0.0.1.

``start_head()`` starts a head node the way an operator would (``ray start --head --block``, Ray 2.60's token
authentication on, dashboard and Jobs API on a free port) and returns a :class:`RayCluster`; ``stop()`` ends
exactly the processes of that cluster and nothing else on the machine.

Isolation, because other people's Ray sessions may run on the same machine:

- every cluster gets its own short root folder; Ray's temp dir is ``<root>/ray`` (``--temp-dir``), so sessions,
  sockets, logs and the ``ray_current_cluster`` file never mix with ``/tmp/ray``;
- every port is a free one picked here (GCS, dashboard, dashboard agent, runtime-env agent, node manager, object
  manager, metrics, Ray Client server, worker ports), never Ray's fixed defaults (6379, 8265, 10001, 52365…);
- the token is a fresh one in ``<root>/auth_token`` (``RAY_AUTH_TOKEN_PATH``), never ``~/.ray/auth_token``;
- ``ray stop`` is never used: it stops every Ray process of the machine. ``stop()`` sends SIGTERM to the
  ``ray start --block`` process of each node (Ray then shuts its own processes down), and SIGKILLs whatever
  process still names the cluster's root folder on its command line (workers, agents) after a grace period.

CPU: the test machine has 2 cores, so a head declares ``num_cpus=2`` by default (the job driver needs none,
every run task asks for 1). A worker node added with :meth:`RayCluster.add_worker` adds its own ``num_cpus``
of *logical* CPUs on the same machine, which oversubscribes the cores: keep runs tiny there.

The nodes' environment is the caller's plus ``RAY_AUTH_MODE``/``RAY_AUTH_TOKEN_PATH``, ``PATH`` starting with
this interpreter's folder (so a job's ``python`` is this venv's) and the ``env`` given: a submitted job inherits
it, which is how a cluster's own environment supplies ``NFLAB_DB_URL``/``MLFLOW_TRACKING_URI`` to nflab's driver.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.loopback import free_port

RAY = str(Path(sys.executable).with_name("ray"))
START_TIMEOUT_S = 90.0
STOP_GRACE_S = 10.0


def _free_range(width: int = 40) -> tuple[int, int]:
    """``width`` consecutive ports, free at the time of asking (for ``--min/--max-worker-port``)."""
    for _ in range(50):
        start = free_port()
        if start + width >= 65535:
            continue
        ports = range(start, start + width)
        try:
            for port in ports:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return start, start + width - 1
    raise RuntimeError("no free port range for Ray workers")


def _node_ports() -> list[str]:
    low, high = _free_range()
    taken: set[int] = set()

    def single() -> int:  # a free port outside the worker range and not handed out already (Ray refuses overlaps)
        while True:
            port = free_port()
            if not low <= port <= high and port not in taken:
                taken.add(port)
                return port

    return [
        f"--node-manager-port={single()}",
        f"--object-manager-port={single()}",
        f"--dashboard-agent-listen-port={single()}",
        f"--dashboard-agent-grpc-port={single()}",
        f"--runtime-env-agent-port={single()}",
        f"--metrics-export-port={single()}",
        f"--min-worker-port={low}",
        f"--max-worker-port={high}",
    ]


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"Ray did not open port {port} in {timeout} s:\n{log.read_text(errors='replace')[-3000:]}")


@dataclass
class RayNode:
    """One ``ray start --block`` process (head or worker) and its log file."""

    proc: subprocess.Popen
    log: Path
    head: bool


@dataclass
class RayCluster:
    """A running cluster: its addresses, token, environment and nodes (see the module docstring)."""

    root: Path
    gcs_address: str
    dashboard_url: str
    token: str | None
    env: dict[str, str]
    nodes: list[RayNode] = field(default_factory=list)

    @property
    def temp_dir(self) -> Path:
        """Ray's temp folder of this cluster (``--temp-dir``)."""
        return self.root / "ray"

    @property
    def token_file(self) -> Path:
        return self.root / "auth_token"

    def client_env(self, base: Mapping[str, str] | None = None, *, token: str = "file") -> dict[str, str]:
        """``base`` (default: os.environ) for a client process, with no ``RAY_AUTH_*`` variable but ``token``:
        ``file`` (``RAY_AUTH_TOKEN_PATH``), ``env`` (``RAY_AUTH_TOKEN``), ``home`` (Ray's default file
        ``$HOME/.ray/auth_token``, HOME an empty folder of this cluster) or ``none`` (that HOME, and no token)."""
        env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("RAY_AUTH")}
        if token not in ("file", "env", "home", "none"):
            raise ValueError(f"token: {token!r} is not one of: file, env, home, none")
        if token in ("home", "none"):  # never the real ~/.ray/auth_token (Ray writes one on any local start)
            home = self.root / f"home-{token}"
            (home / ".ray").mkdir(parents=True, exist_ok=True)
            if token == "home" and self.token is not None:
                (home / ".ray" / "auth_token").write_text(self.token)
            env["HOME"] = str(home)
        if token == "file" and self.token is not None:
            env["RAY_AUTH_TOKEN_PATH"] = str(self.token_file)
        elif token == "env" and self.token is not None:
            env["RAY_AUTH_TOKEN"] = self.token
        return env

    def _start_node(
        self, args: list[str], name: str, wait_port: int | None, env: Mapping[str, str] | None = None
    ) -> RayNode:
        log = self.root / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [RAY, "start", "--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**self.env, **(env or {})},
                cwd=self.root,
                start_new_session=True,
            )
        node = RayNode(proc, log, head=not self.nodes)
        self.nodes.append(node)
        if wait_port is not None:
            _wait_port(wait_port, proc, log, START_TIMEOUT_S)
        return node

    def _wait_ready(self) -> None:
        """Until the Jobs API answers with the token and ``ray start`` has recorded the cluster's address."""
        import requests

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        head = self.nodes[0]
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if head.proc.poll() is not None:
                break
            try:
                ok = requests.get(f"{self.dashboard_url}/api/version", headers=headers, timeout=5).ok
            except requests.RequestException:
                ok = False
            if ok and (self.temp_dir / "ray_current_cluster").exists():
                return
            time.sleep(0.3)
        tail = head.log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"Ray head not ready in {START_TIMEOUT_S} s:\n{tail}")

    def add_worker(self, num_cpus: int = 1, *, num_gpus: int = 0, env: Mapping[str, str] | None = None) -> RayNode:
        """Start a worker node (``ray start --address``) joined to this head; returns once it is registered.

        ``num_gpus`` declares logical GPUs (for scheduling; no CUDA needed); ``env`` adds variables to this node's
        environment only (its own scratch folder, storage credentials), which its tasks inherit."""
        before = self._alive_nodes()
        node = self._start_node(
            [
                f"--address={self.gcs_address}",
                f"--num-cpus={num_cpus}",
                f"--num-gpus={num_gpus}",
                f"--temp-dir={self.temp_dir}",
                *_node_ports(),
            ],
            f"worker{len(self.nodes)}",
            None,
            env=env,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while self._alive_nodes() <= before:
            if node.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker node did not join:\n{node.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        return node

    def _alive_nodes(self) -> int:
        import requests

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            reply = requests.get(f"{self.dashboard_url}/nodes?view=summary", headers=headers, timeout=5)
            summary = reply.json()["data"]["summary"]
        except (requests.RequestException, ValueError, KeyError):
            return 0
        return sum(1 for n in summary if n.get("raylet", {}).get("state") == "ALIVE")

    def processes(self) -> list[int]:
        """The pids of every live process of this cluster: the ``ray start`` processes, their descendants, and any
        process whose command line names the cluster's root folder (Ray's workers and agents)."""
        table = _process_table()
        marker = str(self.root).encode()
        found = {pid for pid, (_, cmdline) in table.items() if marker in cmdline}
        found |= {n.proc.pid for n in self.nodes if n.proc.poll() is None}
        frontier = set(found)
        while frontier:
            frontier = {pid for pid, (ppid, _) in table.items() if ppid in frontier} - found
            found |= frontier
        found.discard(os.getpid())
        return sorted(found)

    def kill_node(self, node: RayNode) -> list[int]:
        """Node loss: SIGKILL one node's ``ray start`` process and every descendant (raylet, workers, agents) at once,
        as a machine that dies would; returns the pids killed. The head notices through its health checks."""
        table = _process_table()
        found = {node.proc.pid}
        frontier = set(found)
        while frontier:
            frontier = {pid for pid, (ppid, _) in table.items() if ppid in frontier} - found
            found |= frontier
        found.discard(os.getpid())
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)  # freeze the whole tree first: nothing restarts or reports its death
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.proc.wait(timeout=STOP_GRACE_S)
        return sorted(found)

    def stop(self) -> None:
        """Stop this cluster's processes only (SIGTERM to each ``ray start``, then SIGKILL what is left)."""
        for node in reversed(self.nodes):
            if node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and any(n.proc.poll() is None for n in self.nodes):
            time.sleep(0.2)
        for _ in range(3):
            pids = self.processes()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.3)
        for node in self.nodes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(timeout=STOP_GRACE_S)
        self.nodes.clear()


def _process_table() -> dict[int, tuple[int, bytes]]:
    """pid → (parent pid, raw command line) of every process, from /proc (Linux)."""
    table: dict[int, tuple[int, bytes]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z":  # a zombie is gone already, only its parent's wait() is missing
            continue
        table[int(entry.name)] = (int(fields[1]), cmdline)
    return table


# fast node-death detection for node-loss tests (Ray's defaults take about 15 s to declare a node dead)
FAST_HEALTH_CHECKS = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "4",
}


def start_head(
    *, num_cpus: int = 2, token: bool = True, env: Mapping[str, str] | None = None, root: Path | None = None
) -> RayCluster:
    """Start a head node on 127.0.0.1 with free ports; ``token`` turns Ray's token authentication on."""
    root = root or Path(tempfile.mkdtemp(prefix="nfray-", dir="/tmp"))  # short: Ray puts unix sockets in it
    node_env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    node_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{node_env.get('PATH', '')}"
    node_env.update(env or {})
    secret = None
    if token:
        secret = secrets.token_hex(16)
        (root / "auth_token").write_text(secret)
        node_env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(root / "auth_token"))
    else:
        node_env["RAY_AUTH_MODE"] = "disabled"
    gcs, dashboard = free_port(), free_port()
    cluster = RayCluster(root, f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dashboard}", secret, node_env)
    try:
        cluster._start_node(
            [
                "--head",
                f"--port={gcs}",
                f"--num-cpus={num_cpus}",
                "--num-gpus=0",
                f"--temp-dir={cluster.temp_dir}",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dashboard}",
                f"--ray-client-server-port={free_port()}",
                *_node_ports(),
            ],
            "head",
            dashboard,
        )
        cluster._wait_ready()
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextmanager
def ray_cluster(**kwargs) -> Iterator[RayCluster]:
    """``start_head(**kwargs)`` for a ``with`` block; stopped (and its root folder removed) at the end."""
    cluster = start_head(**kwargs)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)
