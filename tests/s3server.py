"""A real S3-compatible server for tests: moto's server mode (``moto_server``) on 127.0.0.1, a free port.

``s3_server()`` starts it with fresh random credentials (as AWS_* variables in :attr:`S3Server.env`, never on a
command line), creates a bucket and yields the server; ``stop()`` ends exactly that process. The credentials are
random per server so that a test can grep every log and store for them.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

MOTO = str(Path(sys.executable).with_name("moto_server"))
START_TIMEOUT_S = 60.0


def skip_reason() -> str | None:
    """Why S3 tests cannot run here (moto's server is not installed), or None."""
    if not Path(MOTO).exists() and shutil.which("moto_server") is None:
        return "moto[server] is not installed (pip install 'moto[server]'): S3 storage tests skipped"
    return None


@dataclass
class S3Server:
    proc: subprocess.Popen
    port: int
    bucket: str
    env: dict[str, str]
    log: Path

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def uri(self, prefix: str) -> str:
        """``s3://<bucket>/<prefix>`` with this server as endpoint (the query names no credential)."""
        return f"s3://{self.bucket}/{prefix.strip('/')}?endpoint_override={self.endpoint}&scheme=http"

    @property
    def secrets(self) -> list[str]:
        """The values that must never appear in a log, a param, a tag, an artifact or CLI output."""
        return [self.env["AWS_ACCESS_KEY_ID"], self.env["AWS_SECRET_ACCESS_KEY"]]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def s3_server(root: Path) -> Iterator[S3Server]:
    """A moto S3 server on 127.0.0.1 with a bucket ``nflab-test`` and random credentials; stopped at the end."""
    port = _free_port()
    env = {
        "AWS_ACCESS_KEY_ID": "AKIA" + secrets.token_hex(8).upper(),
        "AWS_SECRET_ACCESS_KEY": "sk" + secrets.token_hex(18),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    log = root / "moto.log"
    root.mkdir(parents=True, exist_ok=True)
    exe = MOTO if Path(MOTO).exists() else (shutil.which("moto_server") or MOTO)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = S3Server(proc, port, "nflab-test", env, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited:\n{log.read_text(errors='replace')[-2000:]}")
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.settimeout(0.5)
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto_server did not listen in {START_TIMEOUT_S} s")
            time.sleep(0.2)
        _create_bucket(server)
        yield server
    finally:
        server.stop()


def _create_bucket(server: S3Server) -> None:
    import pyarrow.fs as pafs

    fs = pafs.S3FileSystem(
        access_key=server.env["AWS_ACCESS_KEY_ID"],
        secret_key=server.env["AWS_SECRET_ACCESS_KEY"],
        region="us-east-1",
        endpoint_override=server.endpoint,
        scheme="http",
        allow_bucket_creation=True,
    )
    fs.create_dir(server.bucket)
