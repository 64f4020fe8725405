"""``nflab serve``: the team leaderboard as a web app (read-only; see ``nflab.serve``)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from nflab.cli import EXIT_OK, BadInput, _guard, _settings, _store, app, err_console


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(help="address to bind; anything but loopback needs NFLAB_SERVE_TOKEN")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port")] = 8765,
) -> None:
    """Serve the leaderboard, configurations, campaigns and studies as a read-only web app (with a JSON API).

    Binds to 127.0.0.1 by default. Any other address needs a token in NFLAB_SERVE_TOKEN, which every request must
    then carry (``Authorization: Bearer TOKEN`` or ``?token=TOKEN``). MLFLOW_UI_URL adds links to the MLflow UI."""

    def body() -> int:
        from nflab.serve import MLFLOW_UI_ENV, TOKEN_ENV, BindRefused, check_bind, create_app

        token = os.environ.get(TOKEN_ENV, "").strip() or None
        try:
            check_bind(host, token)
        except BindRefused as exc:
            raise BadInput(str(exc)) from None
        settings = _settings()
        store = _store(settings)
        import uvicorn

        mlflow_ui = os.environ.get(MLFLOW_UI_ENV, "").strip() or None
        application = create_app(settings, store, token=token, mlflow_ui_url=mlflow_ui, warm=True)
        shown = f"[{host}]" if ":" in host else host
        err_console.print(f"nflab serve: http://{shown}:{port}/ (Ctrl-C stops)", highlight=False)
        uvicorn.run(application, host=host, port=port, log_level="warning", server_header=False, proxy_headers=False)
        return EXIT_OK

    _guard(body)
