"""``nflab serve``: the team leaderboard as a read-only web app (Starlette + Jinja2, served by uvicorn).

Pages (HTML) and the JSON API show the same data (``nflab.serve.views``):

=============================  ==============================================================================
``/`` · ``/leaderboard``       per dataset and metric: mean ± std over seeds, seeds, best, paper rows, filters
``/configs/{config_hash}``     resolved options vs. the published defaults, runs per seed, curves, images
``/campaigns``                 status and progress of every campaign (refreshes itself while one is active)
``/campaigns/{id}``            its runs; failed runs with their reason and log tail
``/studies`` · ``/studies/N``  tuning studies: trials, states, best trial(s), history and Pareto charts, plots
``/api/leaderboard``           exactly ``nflab leaderboard --json`` for the same dataset/metric/select/reference
``/api/facets`` · ``/api/configs/{h}`` · ``/api/campaigns[/{id}]`` · ``/api/studies[/{name}]``
=============================  ==============================================================================

Security: only GET (and HEAD) routes exist, anything else is 405; with a token (``NFLAB_SERVE_TOKEN``) every request
must carry it (``Authorization: Bearer …`` or ``?token=…``, compared in constant time); a request that showed the
token by ``?token=`` gets a session cookie derived from it (an HMAC, never the token itself) so that links work in a
browser. Every page is a Jinja2 template with autoescape on, under a Content-Security-Policy that allows no script
at all; images and charts come from this server only (inline SVG, PNG files of the runs).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import threading
from http.cookies import SimpleCookie
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nflab.settings import Settings, redact
from nflab.store import Store

from .views import LEADERBOARD_PARAMS, BadParameter, NotFound, Views

SESSION_COOKIE = "nflab_session"
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; "
                                 b"frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]  # fmt: skip


class JSONResponse(Response):
    """JSON as ``nflab … --json`` prints it (``default=str`` for timestamps), so that the numbers are the same."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, default=str, ensure_ascii=False)
        # the same JSON value, but no "<", ">" or "&" that a browser sniffing it as HTML could act on
        return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode("utf-8")


def session_value(token: str) -> str:
    """The session cookie's value for ``token``: an HMAC of a fixed label, never the token itself."""
    return hmac.new(token.encode(), b"nflab-serve-session", hashlib.sha256).hexdigest()


class Guard:
    """ASGI middleware: security headers on every response and, with a token, the token on every request."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.session = session_value(token).encode() if token else None

    def _allowed(self, scope: Scope) -> tuple[bool, bool]:
        """(allowed, came by ?token=) for one request."""
        if self.token is None:
            return True, False
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        auth = headers.get("authorization", b"")
        if auth[:7].lower() == b"bearer " and hmac.compare_digest(auth[7:].strip(), self.token):
            return True, False
        for value in parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", []):
            if hmac.compare_digest(value.encode("latin-1", "replace"), self.token):
                return True, True
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", b"").decode("latin-1"))
        except Exception:
            return False, False
        morsel = cookie.get(SESSION_COOKIE)
        if morsel is not None and self.session is not None:
            return hmac.compare_digest(morsel.value.encode("latin-1", "replace"), self.session), False
        return False, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        allowed, by_query = self._allowed(scope)
        if not allowed:
            await _plain(send, 401, "401 Unauthorized: this nflab server needs its token (NFLAB_SERVE_TOKEN)")
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += SECURITY_HEADERS
                if by_query and self.session is not None:
                    cookie = f"{SESSION_COOKIE}={self.session.decode()}; Path=/; HttpOnly; SameSite=Strict"
                    headers.append((b"set-cookie", cookie.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _plain(send: Send, status: int, text: str) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"www-authenticate", b"Bearer"), *SECURITY_HEADERS]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text.encode()})


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("nflab.serve", "templates"),
        autoescape=True,  # every template, whatever its name
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    env.filters["when"] = lambda v: "" if v is None else str(v)[:19].replace("T", " ")
    env.filters["show"] = lambda v: json.dumps(v, default=str) if not isinstance(v, str) else v
    env.globals["query_with"] = _query_with
    return Jinja2Templates(env=env)


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else str(value)
    return str(value)


def _query_with(query: dict[str, Any], **changes: Any) -> str:
    """``?a=1&b=2``: the page's query with some parameters changed (None removes one)."""
    merged = {**query, **changes}
    return "?" + urlencode({k: v for k, v in merged.items() if v not in (None, "")})


def create_app(
    settings: Settings,
    store: Store,
    *,
    token: str | None = None,
    mlflow_ui_url: str | None = None,
    warm: bool = False,
) -> ASGIApp:
    """The ASGI app over ``store`` (read-only), guarded by ``token`` when one is given; ``warm``: compute the default
    leaderboard in a background thread right away, so that the first visitor does not wait for it."""
    views = Views(settings, store, mlflow_ui_url=mlflow_ui_url)
    if warm:
        threading.Thread(target=views.warm, name="nflab-serve-warm", daemon=True).start()
    templates = _templates()
    context = {"store_url": redact(settings.db_url), "mlflow_ui": views.mlflow_ui_url}

    def page(request: Request, name: str, data: dict[str, Any], status: int = 200) -> Response:
        return templates.TemplateResponse(request, name, {**context, **data}, status_code=status)

    def leaderboard_page(request: Request) -> Response:
        # the rendered page is kept until the store changes: a burst of readers costs one rendering
        q = views.leaderboard_query(request.query_params)
        key = ("leaderboard.html", *(q[k] for k in LEADERBOARD_PARAMS))  # the marker covers the filters' choices
        body = views.memo(
            key, q["marker"], lambda: page(request, "leaderboard.html", views.leaderboard_view(q)).body, stale_ok=True
        )  # fmt: skip
        return HTMLResponse(body)

    def leaderboard_api(request: Request) -> Response:
        from nflab.leaderboard import to_json

        q = views.leaderboard_query(request.query_params)
        key = ("api/leaderboard", *(q[k] for k in LEADERBOARD_PARAMS))
        body = views.memo(
            key, q["marker"], lambda: JSONResponse(to_json(views.leaderboard_rows(q))).body, stale_ok=True
        )  # fmt: skip
        return Response(body, media_type=JSONResponse.media_type)

    def facets_api(request: Request) -> Response:
        _no_params(request)
        return JSONResponse(views.facets())

    def config_page(request: Request) -> Response:
        _no_params(request)
        return page(request, "config.html", views.configuration(request.path_params["config_hash"]))

    def config_api(request: Request) -> Response:
        _no_params(request)
        data = views.configuration(request.path_params["config_hash"])
        data["rows"] = [_row_json(v) for v in data["rows"]]
        data["curves"] = data["curves"]["data"]
        return JSONResponse(data)

    def campaigns_page(request: Request) -> Response:
        _no_params(request)
        return page(request, "campaigns.html", views.campaigns())

    def campaigns_api(request: Request) -> Response:
        _no_params(request)
        return JSONResponse(views.campaigns())

    def campaign_page(request: Request) -> Response:
        _no_params(request)
        return page(request, "campaign.html", {"c": views.campaign(request.path_params["campaign_id"])})

    def campaign_api(request: Request) -> Response:
        _no_params(request)
        return JSONResponse(views.campaign(request.path_params["campaign_id"]))

    def studies_page(request: Request) -> Response:
        _no_params(request)
        return page(request, "studies.html", views.study_list())

    def studies_api(request: Request) -> Response:
        _no_params(request)
        return JSONResponse(views.study_list())

    def study_page(request: Request) -> Response:
        _no_params(request)
        return page(request, "study.html", {"s": views.study(request.path_params["name"])})

    def study_api(request: Request) -> Response:
        _no_params(request)
        data = views.study(request.path_params["name"])
        data["charts"] = sorted(data["charts"])
        return JSONResponse(data)

    def study_plot(request: Request) -> Response:
        data = views.study_plot(request.path_params["name"], request.path_params["file"])
        return Response(data, media_type="image/png")

    def run_file(request: Request) -> Response:
        data, media = views.run_file(request.path_params["run_id"], request.path_params["name"])
        return Response(data, media_type=media)

    def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    def failed(request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/api/") or request.url.path == "/health":
            return JSONResponse({"error": message, "status": status}, status_code=status)
        return page(request, "error.html", {"status": status, "message": message}, status=status)

    async def on_bad(request: Request, exc: Exception) -> Response:
        return failed(request, 400, redact(str(exc)))

    async def on_missing(request: Request, exc: Exception) -> Response:
        return failed(request, 404, redact(str(exc)))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        response = failed(request, exc.status_code, str(exc.detail))
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    def get(path: str, endpoint: Any) -> Route:
        return Route(path, endpoint, methods=["GET"])

    routes = [
        get("/", leaderboard_page),
        get("/leaderboard", leaderboard_page),
        get("/configs/{config_hash}", config_page),
        get("/campaigns", campaigns_page),
        get("/campaigns/{campaign_id}", campaign_page),
        get("/studies", studies_page),
        get("/studies/{name}", study_page),
        get("/studies/{name}/plots/{file}", study_plot),
        get("/runs/{run_id}/files/{name}", run_file),
        get("/health", health),
        get("/api/leaderboard", leaderboard_api),
        get("/api/facets", facets_api),
        get("/api/configs/{config_hash}", config_api),
        get("/api/campaigns", campaigns_api),
        get("/api/campaigns/{campaign_id}", campaign_api),
        get("/api/studies", studies_api),
        get("/api/studies/{name}", study_api),
        Mount("/static", StaticFiles(directory=str(files("nflab.serve") / "static")), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            BadParameter: on_bad,
            NotFound: on_missing,
            HTTPException: on_http,
        },
    )
    app.state.views = views
    return Guard(app, token)


def _no_params(request: Request) -> None:
    unknown = sorted(set(request.query_params) - {"token"})
    if unknown:
        raise BadParameter(f"unknown parameter {unknown[0]!r}: this page takes none")


def _row_json(view: dict[str, Any]) -> dict[str, Any]:
    from nflab.leaderboard import to_json

    item = to_json([view["row"]])[0]
    item["badge"] = view["badge"]
    return item
