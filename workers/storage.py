"""Run storage by URI: where checkpoints and run artifacts live (a local folder, a mount, ``s3://``, ``gs://``).

Mechanism: pyarrow's filesystems (``pyarrow.fs.FileSystem.from_uri``). A plain path or ``file://`` URI is a local
folder that runs write into directly (as before: the embedded default, or a mount shared by every node). Any other
URI is *remote*: a run works in a node-local scratch folder (``NFLAB_SCRATCH``, default ``<tmp>/nflab-scratch``)
and mirrors its files into storage with :meth:`Folder.put`, which uploads to a temporary key
(``.tmp-<name>-<uuid>``) and then moves it to its final key, so no reader ever lists a half-written file under its
final name. A run retried on another node first :meth:`Folder.get`\\ s its newest checkpoints back.

Credentials come only from the environment (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``,
``GOOGLE_APPLICATION_CREDENTIALS``…, read by pyarrow itself): a URI that carries them is refused. The URI's
query may name the endpoint (``?endpoint_override=host:port&scheme=http``, for S3-compatible servers and GCS
emulators).

``gs://`` (and ``gcs://``) is opened as pyarrow's ``GcsFileSystem`` built from the query (:data:`GCS_QUERY_KEYS`):
``endpoint_override``, ``scheme``, ``retry_limit_seconds``, ``project_id`` and ``location`` mean what they mean to
pyarrow's own ``gs://`` parser, and ``anonymous=true`` (which that parser lacks) sends no credentials at all. Tested
against gcp-storage-emulator as ``gs://bucket/prefix?endpoint_override=127.0.0.1:PORT&scheme=http&anonymous=true&
retry_limit_seconds=5``. GCS has no rename: pyarrow's move is a server-side copy to the final key, which appears
whole, then a delete of the temporary key, so :meth:`Folder.put` stays atomic to readers there too.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

STORAGE_ENV = "NFLAB_STORAGE"
SCRATCH_ENV = "NFLAB_SCRATCH"
REMOTE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs")
ALLOWED = "a folder path, file:///path, s3://bucket/prefix or gs://bucket/prefix (credentials from the environment)"
_SECRET_KEYS = re.compile(r"(access_key|secret|session_token|password|token|credential)", re.I)
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://")
_TMP_PREFIX = ".tmp-"


class StorageError(ValueError):
    """Run storage that cannot work: names the setting, its value and what is allowed (one line)."""


def _fail(value: str, why: str) -> StorageError:
    shown = re.sub(r"//[^/@]*@", "//***@", value.split("?", 1)[0])  # never echo a query or user info
    return StorageError(f"{STORAGE_ENV}: {shown!r} {why}; allowed: {ALLOWED}")


def is_remote(uri: str | os.PathLike[str]) -> bool:
    """True for a URI of a remote filesystem (``s3://``…), False for a path or ``file://``."""
    m = _SCHEME.match(str(uri))
    return m is not None and m["scheme"].lower() != "file"


def check_uri(value: str) -> str:
    """``value`` normalised (local paths made absolute), or :class:`StorageError` when it cannot be storage."""
    value = value.strip()
    if not value:
        raise _fail(value, "is empty")
    m = _SCHEME.match(value)
    if m is None:
        if "://" in value or re.match(r"^[A-Za-z][A-Za-z0-9+.\-]+:", value):  # a scheme without its //
            raise _fail(value, "is not a URI nor a path")
        return str(Path(value).expanduser().resolve())
    scheme = m["scheme"].lower()
    if scheme == "file":
        path = urlsplit(value).path
        if not path.startswith("/"):
            raise _fail(value, "is not an absolute file:/// URI")
        return str(Path(path).resolve())
    if scheme not in REMOTE_SCHEMES:
        raise _fail(value, f"has an unknown scheme {scheme}://")
    parts = urlsplit(value)
    if "@" in parts.netloc:
        raise _fail(value, "carries credentials (set them in the environment)")
    if not parts.netloc:
        raise _fail(value, "names no bucket")
    if any(_SECRET_KEYS.search(k) for k, _ in parse_qsl(parts.query)):
        raise _fail(value, "carries credentials in its query (set them in the environment)")
    return value.rstrip("/")


def join(base: str, *parts: str) -> str:
    """``base`` (a path or URI, query kept at the end) with ``parts`` appended as path segments."""
    head, sep, query = base.partition("?")
    tail = "/".join(p.strip("/") for p in parts if p)
    joined = f"{head.rstrip('/')}/{tail}" if tail else head
    return f"{joined}{sep}{query}"


_FS_CACHE: dict[str, object] = {}
_FS_LOCK = threading.Lock()
GCS_QUERY_KEYS = ("endpoint_override", "scheme", "retry_limit_seconds", "project_id", "location", "anonymous")


def _gcs_filesystem(query: str) -> object:
    """pyarrow's ``GcsFileSystem`` for a ``gs://`` URI's query (:data:`GCS_QUERY_KEYS`).

    pyarrow's own ``gs://`` parser knows the same keys but ``anonymous``: it always takes Google's default
    credentials, which without ``GOOGLE_APPLICATION_CREDENTIALS`` (or gcloud's) go to the metadata server of a
    Google Cloud machine. ``anonymous=true`` sends no credentials (an emulator, a public bucket); it is a choice,
    not a secret. ``retry_limit_seconds`` bounds how long a failing request is retried (Google's default: 15 minutes).
    """
    from datetime import timedelta

    import pyarrow.fs as pafs

    given = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(given) - set(GCS_QUERY_KEYS))
    if unknown:
        raise ValueError(f"unknown query key {unknown[0]!r} (gs:// takes {', '.join(GCS_QUERY_KEYS)})")
    anonymous = given.pop("anonymous", "false").lower()
    if anonymous not in ("true", "false"):
        raise ValueError("anonymous is true or false")
    kwargs: dict[str, object] = {"anonymous": anonymous == "true"}
    for key in ("endpoint_override", "scheme", "project_id"):
        if key in given:
            kwargs[key] = given[key]
    if "location" in given:
        kwargs["default_bucket_location"] = given["location"]
    if "retry_limit_seconds" in given:
        try:
            seconds = float(given["retry_limit_seconds"])
        except ValueError:
            seconds = 0.0
        if not seconds > 0:
            raise ValueError("retry_limit_seconds is a positive number of seconds")
        kwargs["retry_time_limit"] = timedelta(seconds=seconds)
    return pafs.GcsFileSystem(**kwargs)


def _filesystem(uri: str) -> tuple[object, str]:
    """(pyarrow filesystem, path inside it) for a remote ``uri``; the filesystem is cached per root."""
    import pyarrow.fs as pafs

    head, _, query = uri.partition("?")
    parts = urlsplit(head)
    key = f"{parts.scheme}://{parts.netloc}?{query}"
    with _FS_LOCK:
        fs = _FS_CACHE.get(key)
        if fs is None:
            try:
                if parts.scheme.lower() in ("gs", "gcs"):
                    fs = _gcs_filesystem(query)
                else:
                    fs, _ = pafs.FileSystem.from_uri(f"{parts.scheme}://{parts.netloc}/?{query}" if query else key[:-1])
            except Exception as exc:  # pyarrow raises ArrowInvalid / OSError with its own wording
                raise _fail(uri, f"cannot be opened ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
            _FS_CACHE[key] = fs
    return fs, f"{parts.netloc}{parts.path}".rstrip("/")


def scratch_root() -> Path:
    """This node's scratch folder for runs whose storage is remote (``NFLAB_SCRATCH``, default ``<tmp>``)."""
    return Path(os.environ.get(SCRATCH_ENV) or Path(tempfile.gettempdir()) / "nflab-scratch")


@dataclass(frozen=True)
class Folder:
    """One folder of run storage (``uri``) and, when remote, the local folder that mirrors it (``local``)."""

    uri: str
    local: Path

    @classmethod
    def of(cls, uri: str) -> Folder:
        """The folder at ``uri``; a remote one gets ``<scratch>/<hash of its uri>/<last segment>`` locally."""
        if not is_remote(uri):
            path = Path(urlsplit(uri).path) if uri.startswith("file://") else Path(uri)
            return cls(str(path.resolve()), path.resolve())
        head = uri.partition("?")[0].rstrip("/")
        digest = hashlib.sha1(head.encode()).hexdigest()[:12]
        return cls(uri, scratch_root() / digest / head.rsplit("/", 1)[-1])

    @property
    def remote(self) -> bool:
        return is_remote(self.uri)

    def child(self, *parts: str) -> Folder:
        """The sub-folder ``parts``."""
        return Folder(join(self.uri, *parts), self.local.joinpath(*parts))

    def uri_of(self, name: str) -> str:
        """The URI (remote) or ``file://`` URI (local) of the file ``name`` of this folder."""
        if self.remote:
            return join(self.uri, name).partition("?")[0]
        return (self.local / name).resolve().as_uri()

    def _fs(self) -> tuple[object, str]:
        return _filesystem(self.uri)

    def names(self) -> list[str]:
        """The files directly in this folder (never the temporary keys of uploads in progress), sorted."""
        if not self.remote:
            if not self.local.is_dir():
                return []
            return sorted(p.name for p in self.local.iterdir() if p.is_file() and not p.name.startswith(_TMP_PREFIX))
        import pyarrow.fs as pafs

        fs, path = self._fs()
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        found = (i.base_name for i in infos if i.type == pafs.FileType.File)
        return sorted(n for n in found if not n.startswith(_TMP_PREFIX))

    def put(self, local: Path, name: str | None = None) -> str:
        """Copy the local file into this folder as ``name`` atomically (temporary key, then move); its URI."""
        name = name or local.name
        if not self.remote:
            target = self.local / name
            if local.resolve() != target.resolve():
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f"{_TMP_PREFIX}{name}-{uuid.uuid4().hex}")
                try:
                    tmp.write_bytes(local.read_bytes())
                    os.replace(tmp, target)
                finally:
                    tmp.unlink(missing_ok=True)
            return self.uri_of(name)
        fs, path = self._fs()
        tmp = f"{path}/{_TMP_PREFIX}{name}-{uuid.uuid4().hex}"
        try:
            with open(local, "rb") as src, fs.open_output_stream(tmp) as dst:
                for block in iter(lambda: src.read(1 << 22), b""):
                    dst.write(block)
            fs.move(tmp, f"{path}/{name}")
        except BaseException:
            with contextlib.suppress(Exception):  # nothing written, or storage gone: the temporary key is harmless
                fs.delete_file(tmp)
            raise
        return self.uri_of(name)

    def get(self, name: str, local: Path) -> bool:
        """Download ``name`` to ``local`` (atomically: temporary file, then rename); False when it is missing."""
        if not self.remote:
            source = self.local / name
            if not source.is_file():
                return False
            if source.resolve() == local.resolve():
                return True
            data = source.read_bytes()
        else:
            data = self._read_whole(name)
            if data is None:
                return False
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f"{_TMP_PREFIX}{local.name}-{uuid.uuid4().hex}")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, local)
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def _read_whole(self, name: str, attempts: int = 5) -> bytes | None:
        """The bytes of remote file ``name`` as one whole version, or None when it is missing.

        pyarrow reads an object in ranges sized by a first stat, so a file replaced meanwhile (a move onto an
        existing key) can come back as the new version cut at the old length: the stat is taken again after the
        read, and a read whose size or modification time changed, or whose length is not the size, is repeated."""
        import pyarrow.fs as pafs

        fs, path = self._fs()
        key = f"{path}/{name}"
        for _ in range(attempts):
            before = fs.get_file_info(key)
            if before.type != pafs.FileType.File:
                return None
            try:
                with fs.open_input_stream(key) as src:
                    data = src.read()
            except FileNotFoundError:  # deleted between the stat and the read (a newer one replaced it)
                continue
            after = fs.get_file_info(key)
            if len(data) == before.size == after.size and before.mtime == after.mtime:
                return data
        raise OSError(f"{self.uri_of(name)}: replaced while being read, {attempts} times in a row")

    def read_text(self, name: str) -> str | None:
        """The text of file ``name``, or None when it is missing or the storage cannot be read."""
        if not self.remote:
            try:
                return (self.local / name).read_text()
            except OSError:
                return None
        try:
            fs, path = self._fs()
            with fs.open_input_stream(f"{path}/{name}") as src:
                return src.read().decode()
        except (OSError, StorageError, UnicodeDecodeError):
            return None

    def delete(self, name: str) -> None:
        """Remove file ``name`` (missing is fine)."""
        if not self.remote:
            (self.local / name).unlink(missing_ok=True)
            return
        fs, path = self._fs()
        with contextlib.suppress(FileNotFoundError):
            fs.delete_file(f"{path}/{name}")


def _bucket_missing(folder: Folder) -> bool:
    """Whether the bucket of a remote ``folder`` surely does not exist. pyarrow lists a missing bucket as an empty
    folder (GCS); credentials that may list objects but not read the bucket itself give no answer (False)."""
    import pyarrow.fs as pafs

    fs, path = folder._fs()
    try:
        return fs.get_file_info(path.split("/", 1)[0]).type == pafs.FileType.NotFound
    except OSError:
        return False


def probe(uri: str) -> None:
    """Raise :class:`StorageError` (one line) when ``uri`` cannot be listed: a wrong endpoint, bucket or credentials."""
    folder = Folder.of(uri)
    if not folder.remote:
        return
    try:
        missing = not folder.names() and _bucket_missing(folder)
    except StorageError:
        raise
    except Exception as exc:
        raise _fail(uri, f"cannot be reached ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    if missing:
        raise _fail(uri, "names a bucket that does not exist")
