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
from pathlib import Path

from tests import loopback

MOTO = str(Path(sys.executable).with_name("moto_server"))


def skip_reason() -> str | None:
    """Why S3 tests cannot run here (moto's server is not installed), or None."""
    if not Path(MOTO).exists() and shutil.which("moto_server") is None:
        return "moto[server] is not installed (pip install 'moto[server]'): S3 storage tests skipped"
    return None


class S3Server(loopback.BucketServer):
    scheme = "s3"

    def query(self, endpoint: str, *, dead: bool = False) -> str:
        short = "&connect_timeout=1&request_timeout=1" if dead else ""
        return f"endpoint_override={endpoint}&scheme=http{short}"

    @property
    def secrets(self) -> list[str]:
        return [self.env["AWS_ACCESS_KEY_ID"], self.env["AWS_SECRET_ACCESS_KEY"]]


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
