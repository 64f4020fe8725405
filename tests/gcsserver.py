"""A real Google Cloud Storage emulator for tests: ``gcp-storage-emulator start --in-memory`` on 127.0.0.1, a free
port.

``gcs_server()`` starts it, creates a bucket through pyarrow and yields the server; ``stop()`` ends exactly that
process. The emulator checks no credentials, so the URIs of :meth:`GcsServer.uri` ask pyarrow for none
(``anonymous=true``: no credential lookup, no metadata server) and bound its retries (``retry_limit_seconds``).
:attr:`GcsServer.env` points Google's metadata server at a loopback port nobody listens on, so that a lookup of
default credentials, were one made, fails at once on this machine instead of going to the network.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests import loopback

EMULATOR = str(Path(sys.executable).with_name("gcp-storage-emulator"))
RETRY_LIMIT_S = 5  # how long pyarrow retries a failing request against the emulator


def skip_reason() -> str | None:
    """Why GCS tests cannot run here (the emulator is not installed), or None."""
    if not Path(EMULATOR).exists() and shutil.which("gcp-storage-emulator") is None:
        return "gcp-storage-emulator is not installed (pip install gcp-storage-emulator): GCS storage tests skipped"
    return None


def query(endpoint: str, retry_limit_s: float = RETRY_LIMIT_S) -> str:
    """The ``gs://`` query that reaches an emulator at ``endpoint`` (host:port) without credentials."""
    return f"endpoint_override={endpoint}&scheme=http&anonymous=true&retry_limit_seconds={retry_limit_s}"


class GcsServer(loopback.BucketServer):
    scheme = "gs"

    def query(self, endpoint: str, *, dead: bool = False) -> str:
        return query(endpoint, retry_limit_s=1 if dead else RETRY_LIMIT_S)


@contextmanager
def gcs_server(root: Path) -> Iterator[GcsServer]:
    """A GCS emulator on 127.0.0.1 (in memory) with a bucket ``nflab-test``; stopped at the end."""
    port = loopback.free_port()
    env = {"GCE_METADATA_ROOT": f"{loopback.HOST}:{loopback.free_port()}"}
    exe = EMULATOR if Path(EMULATOR).exists() else (shutil.which("gcp-storage-emulator") or EMULATOR)
    argv = [exe, "start", "--host", loopback.HOST, "--port", str(port), "--in-memory"]
    server = GcsServer(loopback.start("gcp-storage-emulator", argv, port, root / "gcs.log"), "nflab-test", env)
    try:
        _create_bucket(server)
        yield server
    finally:
        server.stop()


def _create_bucket(server: GcsServer) -> None:
    from datetime import timedelta

    import pyarrow.fs as pafs

    fs = pafs.GcsFileSystem(
        anonymous=True,
        endpoint_override=server.endpoint,
        scheme="http",
        project_id="nflab-test",
        retry_time_limit=timedelta(seconds=RETRY_LIMIT_S),
    )
    fs.create_dir(server.bucket)
