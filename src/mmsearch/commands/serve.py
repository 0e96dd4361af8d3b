"""``mmsearch serve``: the JSON API, web UI and metrics over HTTP (uvicorn)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

APP_FACTORY = "mmsearch.commands.serve:app_from_environment"


def app_from_environment() -> object:
    """The app for uvicorn's ``--factory`` mode: each worker process builds its own."""
    from mmsearch.config import load_settings
    from mmsearch.service.app import create_app

    return create_app(load_settings())


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8000,
        workers: Annotated[
            int, typer.Option("--workers", min=1, max=64, help="Worker processes.")
        ] = 1,
        home: Annotated[
            Path | None,
            typer.Option(
                "--home", help="Workspace folder (default ./mmsearch-data or $MMSEARCH_HOME)."
            ),
        ] = None,
        log_level: Annotated[str, typer.Option("--log-level")] = "info",
        tracing: Annotated[
            str | None, typer.Option("--tracing", help="off, console or otlp")
        ] = None,
    ) -> None:
        """Serve the search API and web UI (JSON logs on stderr, metrics at /metrics)."""
        import uvicorn

        from mmsearch.config import load_settings
        from mmsearch.errors import MMSearchError
        from mmsearch.monitoring.logs import configure_json_logging
        from mmsearch.monitoring.tracing import make_exporter

        # Workers are separate processes: they read the settings from the environment.
        if home is not None:
            os.environ["MMSEARCH_HOME"] = str(home.expanduser().resolve())
        if tracing is not None:
            os.environ["MMSEARCH_TRACING"] = tracing
        settings = load_settings()
        try:
            make_exporter(settings.tracing)  # fail now, not in every worker
        except MMSearchError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        configure_json_logging(log_level)
        typer.echo(
            f"mmsearch serving {settings.home} on http://{host}:{port} "
            f"(UI /, API /docs, metrics /metrics)",
            err=True,
        )
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=None,
            access_log=False,
            timeout_keep_alive=5,
            limit_concurrency=1024,
        )
