"""``nflab serve``: the team leaderboard as a read-only web app over the SQL store, MLflow and Optuna.

:func:`check_bind` decides whether an address may be served (loopback always; anything else only with a token),
:func:`create_app` builds the ASGI app (``nflab.serve.app``), ``nflab.serve.views`` computes what the pages show.
"""

from __future__ import annotations

import ipaddress
from typing import Any

TOKEN_ENV = "NFLAB_SERVE_TOKEN"
MLFLOW_UI_ENV = "MLFLOW_UI_URL"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8765


class BindRefused(ValueError):
    """A non-loopback address without a token: the one-line reason."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve ``host`` when it is not loopback and there is no token (:class:`BindRefused`)."""
    if not is_loopback(host) and not token:
        raise BindRefused(
            f"--host: {host!r} is not a loopback address; set {TOKEN_ENV} to serve it (every request must then "
            "carry the token), or bind to 127.0.0.1"
        )


def create_app(*args: Any, **kwargs: Any) -> Any:
    """The ASGI app (see :func:`nflab.serve.app.create_app`)."""
    from nflab.serve.app import create_app as make

    return make(*args, **kwargs)
