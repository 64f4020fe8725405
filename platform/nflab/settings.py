"""nflab's one settings object: embedded defaults under ``$NFLAB_HOME``, environment variables override.

Credentials come only from the environment (e.g. a password inside ``NFLAB_DB_URL``); ``Settings.redacted()``
is what gets printed (``nflab config show``), never the raw URLs.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

# env var -> Settings field
ENV_VARS: dict[str, str] = {
    "NFLAB_HOME": "home",
    "NFLAB_DB_URL": "db_url",
    "MLFLOW_TRACKING_URI": "mlflow_tracking_uri",
    "RAY_ADDRESS": "ray_address",
    "NFLAB_OPTUNA_URL": "optuna_url",
    "NFLAB_DATA": "data_root",
    "NFLAB_MAX_RUNS": "max_runs",
    "NFLAB_STORAGE": "storage",
}
DEFAULT_MAX_RUNS = 10_000  # a campaign above this many runs is refused unless confirmed (``--yes``)

_USERINFO_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):(?P<pw>[^@/\s]*)@")
_QUERY_SECRET = re.compile(r"(?P<key>[?&;](?:password|passwd|pwd|token|secret|api_key)=)(?P<val>[^&;\s]*)", re.I)


# what each URL setting may name: nflab's store runs on SQLite and PostgreSQL; MLflow takes its own stores
DB_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")
MLFLOW_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg", "mysql", "mssql", "file", "http", "https", "databricks")
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://")


class SettingsError(ValueError):
    """A setting from the environment that cannot work: names the variable, its (redacted) value and what is
    allowed. Raised by :func:`load_settings` before anything starts."""

    def __init__(self, var: str, value: str, allowed: str) -> None:
        super().__init__(f"{var}: {redact(value)!r} is not {allowed}")

    @classmethod
    def from_message(cls, message: str) -> SettingsError:
        """A SettingsError carrying an already worded (and redacted) one-line message."""
        err = cls.__new__(cls)
        ValueError.__init__(err, message)
        return err


def redact(value: str) -> str:
    """Replace the password of ``scheme://user:password@host`` (and ``?password=``-like params) by ``***``."""
    value = _USERINFO_PASSWORD.sub(lambda m: f"{m['head']}:***@", value)
    return _QUERY_SECRET.sub(lambda m: f"{m['key']}***", value)


@dataclass(frozen=True)
class Settings:
    """Where nflab keeps its state and which services it talks to (the README's settings table)."""

    home: Path
    db_url: str
    mlflow_tracking_uri: str
    mlflow_artifact_root: Path
    ray_address: str | None
    optuna_url: str
    data_root: Path
    max_runs: int = DEFAULT_MAX_RUNS
    storage: str = ""  # run storage (checkpoints, run artifacts): a folder or a filesystem URI (s3://, gs://…)

    @property
    def is_sqlite(self) -> bool:
        """True when the nflab SQL store is an embedded SQLite file."""
        return self.db_url.startswith("sqlite")

    def redacted(self) -> dict[str, Any]:
        """Every setting as plain strings (None kept), with passwords in URLs replaced by ``***``."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            out[key] = None if value is None else redact(str(value))
        return out

    def ensure_dirs(self) -> None:
        """Create the home folder, the artifact root, the data root and the SQLite files' folders."""
        for folder in (self.home, self.mlflow_artifact_root, self.data_root):
            folder.mkdir(parents=True, exist_ok=True)
        for url in (self.db_url, self.mlflow_tracking_uri):
            path = sqlite_path(url)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
        if "://" not in self.optuna_url:
            Path(self.optuna_url).expanduser().parent.mkdir(parents=True, exist_ok=True)


def sqlite_path(url: str) -> Path | None:
    """The file behind a ``sqlite:///path`` URL; None for other URLs and in-memory SQLite."""
    if not url.startswith("sqlite"):
        return None
    _, _, rest = url.partition(":///")
    rest = rest.split("?", 1)[0]
    if not rest or rest == ":memory:":
        return None
    return Path(rest)


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment (read now) and explicit ``overrides`` (field names).

    Defaults derive from the home folder, so overriding ``home`` moves every default with it.
    """
    unknown = set(overrides) - set(Settings.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown settings: {sorted(unknown)}; allowed: {sorted(Settings.__dataclass_fields__)}")
    home = Path(overrides.get("home") or _env("NFLAB_HOME") or "./.nflab").expanduser().resolve()
    values: dict[str, Any] = {
        "home": home,
        "db_url": _env("NFLAB_DB_URL") or f"sqlite:///{home / 'nflab.db'}",
        "mlflow_tracking_uri": _env("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}",
        "mlflow_artifact_root": home / "artifacts",
        "ray_address": _env("RAY_ADDRESS"),
        "optuna_url": _env("NFLAB_OPTUNA_URL") or str(home / "optuna.journal"),
        "data_root": Path(_env("NFLAB_DATA") or home / "data").expanduser(),
        "max_runs": _positive_int("NFLAB_MAX_RUNS", _env("NFLAB_MAX_RUNS"), DEFAULT_MAX_RUNS),
        "storage": _env("NFLAB_STORAGE") or str(home / "runs"),
    }
    settings = Settings(**values)
    rest = {k: v for k, v in overrides.items() if k != "home" and v is not None}
    for key in ("mlflow_artifact_root", "data_root"):
        if key in rest:
            rest[key] = Path(rest[key]).expanduser()
    settings = replace(settings, **rest)
    settings = replace(settings, storage=checked_storage(settings.storage))
    check_settings(settings)
    return settings


def _positive_int(var: str, text: str | None, default: int) -> int:
    if text is None:
        return default
    if not text.isdigit() or int(text) < 1:
        raise SettingsError(var, text, "a positive integer")
    return int(text)


def check_settings(settings: Settings) -> None:
    """Raise :class:`SettingsError` for a setting that cannot work (a URL of no known scheme, a folder that is a
    file), so that the mistake is one line before Ray or a store starts."""
    for var, folder in (("NFLAB_HOME", settings.home), ("NFLAB_DATA", settings.data_root)):
        if folder.exists() and not folder.is_dir():
            raise SettingsError(var, str(folder), "a folder (it is a file)")
    db = _SCHEME.match(settings.db_url)
    if db is None or db["scheme"] not in DB_SCHEMES:
        raise SettingsError("NFLAB_DB_URL", settings.db_url, f"a database URL: {' or '.join(DB_SCHEMES)}://…")
    checked_storage(settings.storage)
    mlflow = _SCHEME.match(settings.mlflow_tracking_uri)
    if mlflow is not None and mlflow["scheme"] not in MLFLOW_SCHEMES:
        raise SettingsError(
            "MLFLOW_TRACKING_URI",
            settings.mlflow_tracking_uri,
            f"a tracking URI: {', '.join(MLFLOW_SCHEMES)} or a path",
        )


def checked_storage(value: str) -> str:
    """``NFLAB_STORAGE`` normalised (an absolute folder, or the URI as given), or :class:`SettingsError` (one line
    naming the setting, its value and what is allowed)."""
    from nflab.workers.storage import StorageError, check_uri

    try:
        return check_uri(str(value))
    except StorageError as exc:
        raise SettingsError.from_message(str(exc)) from None


def ensure_dirs(settings: Settings | None = None) -> Settings:
    """Create the folders of ``settings`` (loaded from the environment when omitted) and return them."""
    settings = settings or load_settings()
    settings.ensure_dirs()
    return settings
