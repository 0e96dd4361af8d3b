"""Helpers for the service tests: a small collection and a real uvicorn server in a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from mmsearch.config import Settings
from mmsearch.ingest import IngestOptions, Ingestor


def ingest_shop(settings: Settings, catalog: Path, name: str = "shop") -> None:
    Ingestor(settings).run(IngestOptions(catalog, name))


@contextmanager
def running_server(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 at a free port; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


# Path parameters for requests that walk every route: a collection that exists ("shop"),
# ids that do not, so a route answers its own 404 once the guard lets the caller through.
PARAMS = {
    "name": "shop",
    "collection": "shop",
    "item_id": "no-such-item",
    "n": "0",
    "build_id": "no-such-build",
    "job_id": "no-such-job",
    "key_id": "k_doesnotexist",
    "rules_name": "no-such-rules",
    "ranker_name": "no-such-ranker",
    "policy_name": "no-such-policy",
    "path:path": "none.txt",
    "entity": "category=kitchen",
}


def concrete(path: str) -> str:
    for key, value in PARAMS.items():
        path = path.replace("{" + key + "}", value)
    return path
