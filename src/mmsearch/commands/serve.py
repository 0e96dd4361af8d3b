"""``mmsearch serve``: the JSON API, web UI and metrics over HTTP (uvicorn)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

APP_FACTORY = "mmsearch.commands.serve:app_from_environment"
# How long uvicorn's supervisor waits for a worker to answer its health ping before it
# kills it as hung. A new worker answers only once it has imported the app, which on a
# busy host takes longer than uvicorn's 5 s: every worker was then killed and restarted
# without end. A hung worker is now replaced after a minute instead.
WORKER_HEALTHCHECK_S = 60


# serve's --log-level for worker processes: uvicorn starts them as fresh interpreters,
# which inherit the environment but not the parent's logging set-up.
LOG_LEVEL_ENV = "MMSEARCH_SERVE_LOG_LEVEL"


def app_from_environment() -> object:
    """The app for uvicorn's ``--factory`` mode: each worker process builds its own, and
    logs JSON lines as the parent does (without this a worker's access log was lost)."""
    from mmsearch.config import load_settings
    from mmsearch.monitoring.logs import configure_json_logging
    from mmsearch.service.app import create_app

    level = os.environ.get(LOG_LEVEL_ENV)
    if level:
        configure_json_logging(level)
    return create_app(load_settings())


def register(app: typer.Typer) -> None:
    app.command()(serve)


def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8000,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Worker processes.")] = 1,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home", help="Workspace folder (default ./mmsearch-data or $MMSEARCH_HOME)."
        ),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
    tracing: Annotated[str | None, typer.Option("--tracing", help="off, console or otlp")] = None,
    warm: Annotated[
        bool,
        typer.Option(
            "--warm/--no-warm",
            help="Load every collection's models in the background at start, so the first "
            "search does not wait for them.",
        ),
    ] = True,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth",
            help="Serve without API keys even on a non-loopback address (anyone may do anything).",
        ),
    ] = False,
) -> None:
    """Serve the search API and web UI (JSON logs on stderr, metrics at /metrics).

    On a loopback address, API keys are required as soon as one exists. On any other
    address they are always required, and the server refuses to start without an
    admin key unless --insecure-no-auth is given."""
    import uvicorn

    from mmsearch.commands.server_file import ServerRecord, record_path, recorded
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
        auth = auth_mode(host, settings.home, insecure_no_auth)
    except MMSearchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    os.environ["MMSEARCH_AUTH"] = auth
    os.environ["MMSEARCH_WARM_ON_START"] = "true" if warm else "false"
    os.environ["MMSEARCH_WORKERS"] = str(workers)  # shared request budgets when above 1
    # <home>/server.json lets `mmsearch search` use this server's warm models; with
    # --port 0 the port is uvicorn's choice, unknown here, so nothing is recorded.
    record = ServerRecord.for_this_process(host, port, settings.home) if port else None
    if record is not None:
        os.environ["MMSEARCH_SERVER_ID"] = record.server_id
    if not settings.allowed_hosts and not is_loopback(host):
        os.environ["MMSEARCH_ALLOWED_HOSTS"] = json.dumps(served_hosts(host))
    configure_json_logging(log_level)
    os.environ[LOG_LEVEL_ENV] = log_level
    if auth == "off":
        logging.getLogger("mmsearch.security").warning(
            "AUTHENTICATION IS OFF (--insecure-no-auth): anyone who can reach "
            f"{host}:{port} may read, write and administer every collection"
        )
    typer.echo(
        f"mmsearch serving {settings.home} on http://{host}:{port} "
        f"(UI /, API /docs, metrics /metrics; API keys: {auth})",
        err=True,
    )
    with (
        shared_metrics(workers),
        recorded(record) if record else contextlib.nullcontext() as problem,
    ):
        if problem is not None:  # the server runs; searches only lose the shortcut
            typer.echo(f"note: cannot write {record_path(settings.home)} ({problem})", err=True)
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
            log_config=None,
            access_log=False,
            timeout_keep_alive=5,
            limit_concurrency=1024,
        )


@contextlib.contextmanager
def shared_metrics(workers: int) -> Iterator[Path | None]:
    """With several workers, a fresh owner-only folder for their metric values, named to
    them in ``PROMETHEUS_MULTIPROC_DIR`` before they start and removed when they stop.

    A scrape reaches one worker; with the values of all of them in files there, that
    worker reports the sums (``monitoring/metrics.py``). The folder is new for every
    start (``mkdtemp``: empty, 0700), so counts of an earlier run never leak into this
    one. uvicorn's supervisor turns SIGTERM and SIGINT into a normal return, so the
    folder is removed on those too. One worker keeps its values in memory, as always."""
    from mmsearch.monitoring.metrics import MULTIPROC_ENV

    if workers <= 1:
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="mmsearch-metrics-"))
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = str(folder)
    try:
        yield folder
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(folder, ignore_errors=True)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: treat it as reachable from the network


def auth_mode(host: str, home: Path, insecure_no_auth: bool) -> str:
    """on / off / auto for the workers, refusing an open server on a network address."""
    from mmsearch.errors import MMSearchError
    from mmsearch.governance.keys import KeyStore

    if insecure_no_auth:
        return "off"
    if is_loopback(host):
        return "auto"
    if not KeyStore(home).has_admin():
        raise MMSearchError(
            f"Refusing to serve on {host} without API keys: create an admin key first "
            "(mmsearch keys create --role admin), or pass --insecure-no-auth to serve "
            "without authentication."
        )
    return "on"


def served_hosts(host: str) -> list[str]:
    """Host names a non-loopback server answers unless MMSEARCH_ALLOWED_HOSTS says otherwise."""
    import socket

    from mmsearch.service.guard import default_hosts

    hostname = socket.gethostname()
    names = [*default_hosts(host), hostname.lower(), socket.getfqdn().lower()]
    with contextlib.suppress(OSError):
        names += socket.gethostbyname_ex(hostname)[2]  # the machine's own addresses
    return list(dict.fromkeys(names))
