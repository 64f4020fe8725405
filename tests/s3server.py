"""A real S3-compatible server for tests: moto's server mode (``moto_server``) on 127.0.0.1, a free port.

``s3_server()`` starts it with fresh random credentials (as AWS_* variables in :attr:`S3Server.env`, never on a
command line), creates a bucket and yields the server; ``stop()`` ends exactly that process. The credentials are
random per server so that a test can grep every log and store for them.
"""

from __future__ import annotations

import secrets
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests import loopback

MOTO = str(Path(sys.executable).with_name("moto_server"))


def skip_reason() -> str | None:
    """Why S3 tests cannot run here (moto's server is not installed), or None."""
    if not Path(MOTO).exists() and shutil.which("moto_server") is None:
        return "moto[server] is not installed (pip install 'moto[server]'): S3 storage tests skipped"
    return None


@dataclass
class S3Server:
    server: loopback.Loopback
    bucket: str
    env: dict[str, str]

    scheme = "s3"

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    @property
    def log(self) -> Path:
        return self.server.log

    def uri(self, prefix: str, *, bucket: str | None = None) -> str:
        """``s3://<bucket>/<prefix>`` with this server as endpoint (the query names no credential)."""
        return f"s3://{bucket or self.bucket}/{prefix.strip('/')}?endpoint_override={self.endpoint}&scheme=http"

    def dead_uri(self, prefix: str) -> str:
        """A URI like :meth:`uri` whose endpoint nobody listens on, with short timeouts."""
        dead = f"{loopback.HOST}:{loopback.free_port()}"
        query = f"endpoint_override={dead}&scheme=http&connect_timeout=1&request_timeout=1"
        return f"s3://{self.bucket}/{prefix.strip('/')}?{query}"

    @property
    def secrets(self) -> list[str]:
        """The values that must never appear in a log, a param, a tag, an artifact or CLI output."""
        return [self.env["AWS_ACCESS_KEY_ID"], self.env["AWS_SECRET_ACCESS_KEY"]]

    def stop(self) -> None:
        self.server.stop()


@contextmanager
def s3_server(root: Path) -> Iterator[S3Server]:
    """A moto S3 server on 127.0.0.1 with a bucket ``nflab-test`` and random credentials; stopped at the end."""
    port = loopback.free_port()
    env = {
        "AWS_ACCESS_KEY_ID": "AKIA" + secrets.token_hex(8).upper(),
        "AWS_SECRET_ACCESS_KEY": "sk" + secrets.token_hex(18),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    exe = MOTO if Path(MOTO).exists() else (shutil.which("moto_server") or MOTO)
    proc = loopback.start("moto_server", [exe, "-H", loopback.HOST, "-p", str(port)], port, root / "moto.log")
    server = S3Server(proc, "nflab-test", env)
    try:
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
