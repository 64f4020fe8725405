"""Ray addresses and token authentication, without importing Ray at module level (the CLI stays fast).

- ``split_address`` / ``probe``: a configured address is checked with a TCP connect of a few seconds before Ray
  is asked to use it, because ``ray.init`` retries an unreachable GCS for minutes.
- Token authentication (Ray ≥ 2.52, on by default for local clusters since 2.60): the token comes from
  ``RAY_AUTH_TOKEN``, else the file named by ``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token`` — Ray's own
  loader and precedence (``token_header``). It is only ever put in an HTTP ``Authorization`` header or left
  to Ray's gRPC layer; nflab never prints, stores or logs it.
"""

from __future__ import annotations

import os
import socket

PROBE_TIMEOUT_S = 3.0
AUTH_HELP = (
    "give the cluster's token in RAY_AUTH_TOKEN, in a file named by RAY_AUTH_TOKEN_PATH, or in ~/.ray/auth_token "
    "(`ray get-auth-token` on the head prints it)"
)


class RayAddressError(ConnectionError):
    """A configured Ray address that cannot be used; the message is one line for the user (exit code 2)."""


def is_jobs_address(address: str | None) -> bool:
    """True for a Ray Jobs API (dashboard) address: ``http://head:8265``."""
    return bool(address) and address.startswith(("http://", "https://"))


def split_address(address: str, field: str = "Ray address") -> tuple[str, int]:
    """``(host, port)`` of ``host:port``, ``ray://host:port`` or ``http(s)://host[:port][/path]``."""
    rest = address.split("://", 1)[1] if "://" in address else address
    rest = rest.split("/", 1)[0]
    host, sep, port = rest.rpartition(":")
    default = {"http": 80, "https": 443}.get(address.split("://", 1)[0]) if "://" in address else None
    if not sep and default is not None:
        host, port = rest, str(default)
    if not host or not port.isdigit():
        raise RayAddressError(
            f"{field}: {address!r} is not an address; allowed: host:port (the cluster's GCS), ray://host:port, "
            "http://host:port (the Jobs API, for `nflab submit`)"
        )
    return host.strip("[]"), int(port)


def probe(address: str, field: str = "Ray address", timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise :class:`RayAddressError` unless something accepts a TCP connection at ``address`` within ``timeout``."""
    host, port = split_address(address, field)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__).lower()
        raise RayAddressError(
            f"{field}: {address!r} cannot be reached ({reason} within {timeout:g} s); allowed: the address of a "
            "running Ray cluster, or no address for a local Ray"
        ) from None


def check_address(address: str | None) -> None:
    """Raise :class:`RayAddressError` unless ``address`` is usable for a driver: unset/``local``/``auto``, or a GCS
    (``host:port``) or Ray Client (``ray://``) address that answers; a Jobs API address is for ``submit`` only."""
    if address is None or address in ("local", "auto"):
        return
    if is_jobs_address(address):
        raise RayAddressError(
            f"Ray address: {address!r} is a Jobs API (dashboard) address, which only `nflab submit` uses; allowed "
            "here: host:port of the cluster's GCS, ray://host:port, or no address for a local Ray"
        )
    probe(address)


def token_header() -> dict[str, str]:
    """``{"authorization": "Bearer …"}`` from Ray's token sources (whatever ``RAY_AUTH_MODE`` says), or ``{}``."""
    try:
        from ray._raylet import AuthenticationTokenLoader
    except ImportError:  # a Ray without token authentication
        return {}
    loader = AuthenticationTokenLoader.instance()
    loader.reset_cache()  # the environment may have changed since Ray first looked
    return dict(loader.get_token_for_http_header(ignore_auth_mode=True) or {})


def enable_token_auth_if_available() -> None:
    """Use token authentication towards an explicitly addressed cluster when a token is available.

    Ray does this itself only for a cluster it finds on its own (``address=None``/``"auto"``); with an explicit
    address and ``RAY_AUTH_MODE`` unset, ``ray.init`` sends no token and a token cluster refuses it after 20 s.
    A client in token mode also works with a cluster that has authentication off. ``RAY_AUTH_MODE`` set by the
    user is left as it is.
    """
    if "RAY_AUTH_MODE" in os.environ or not token_header():
        return
    from ray._raylet import Config

    os.environ["RAY_AUTH_MODE"] = "token"
    Config.initialize("")  # Ray caches its config: re-read it so that this process uses token mode
