"""Test servers run as child processes on 127.0.0.1: a free port, start, wait until it listens, stop exactly it.

Shared by the storage servers of the tests (``tests/s3server.py``, ``tests/gcsserver.py``). A server gets its own
session (``start_new_session``) and its output goes to a log file; :meth:`Loopback.stop` signals only that process.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0


def free_port() -> int:
    """A TCP port nobody listens on at 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def listening(port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections at 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((HOST, port)) == 0


@dataclass
class Loopback:
    """One server process listening on 127.0.0.1:``port``, its output in ``log``."""

    name: str
    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def endpoint(self) -> str:
        return f"{HOST}:{self.port}"

    def tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period: this process only."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=STOP_GRACE_S)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_GRACE_S)


def start(
    name: str,
    argv: Sequence[str],
    port: int,
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = START_TIMEOUT_S,
) -> Loopback:
    """Start ``argv`` (which must listen on 127.0.0.1:``port``) and return once it accepts connections; a server
    that exits or does not listen within ``timeout`` is stopped and raises RuntimeError with its log's tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    server = Loopback(name, proc, port, log)
    deadline = time.monotonic() + timeout
    try:
        while not listening(port):
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{server.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not listen on {server.endpoint} in {timeout} s:\n{server.tail()}")
            time.sleep(0.2)
    except BaseException:
        server.stop()
        raise
    return server


@dataclass
class BucketServer:
    """An object-storage server on loopback with one bucket: its URIs (``scheme``, :meth:`query`) and the secrets it
    was started with (``env``); S3 (moto) and GCS (the emulator) differ only in their query and secrets."""

    server: Loopback
    bucket: str
    env: dict[str, str]

    scheme: ClassVar[str] = ""

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    @property
    def log(self) -> Path:
        return self.server.log

    def query(self, endpoint: str, *, dead: bool = False) -> str:
        """The URI query that reaches ``endpoint`` (``dead``: nobody listens there, so fail fast); no credential."""
        raise NotImplementedError

    def uri(self, prefix: str, *, bucket: str | None = None) -> str:
        """``<scheme>://<bucket>/<prefix>`` with this server as endpoint."""
        return f"{self.scheme}://{bucket or self.bucket}/{prefix.strip('/')}?{self.query(self.endpoint)}"

    def dead_uri(self, prefix: str) -> str:
        """A URI like :meth:`uri` whose endpoint nobody listens on."""
        dead = f"{HOST}:{free_port()}"
        return f"{self.scheme}://{self.bucket}/{prefix.strip('/')}?{self.query(dead, dead=True)}"

    @property
    def secrets(self) -> list[str]:
        """The values that must never appear in a log, a param, a tag, an artifact or CLI output."""
        return []

    def stop(self) -> None:
        self.server.stop()
