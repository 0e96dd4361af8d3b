"""A Milvus Lite server for the tests: one process per session, reached by URI like a cluster.

Milvus Lite 3.x (pure Python) is started with ``milvus-lite server``; Milvus Lite 2.5
(Milvus's C++ core, used with pymilvus < 2.6) has no such command, so its ``Server``
is started on a TCP address instead of its default Unix socket.
``MMSEARCH_TEST_MILVUS_URI`` points the tests at a real server instead (then nothing
is started; collection names are unique per build, so runs can share it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(uri: str) -> bool:
    from pymilvus import MilvusClient

    try:
        client = MilvusClient(uri=uri, timeout=2)
        client.list_collections()  # Milvus Lite 2.5 has no GetVersion
        client.close()
        return True
    except Exception:
        return False


@contextmanager
def milvus_lite_server(data_dir: Path) -> Iterator[str]:
    """Start ``milvus-lite server`` on a free loopback port; yield its URI; stop it."""
    given = os.environ.get("MMSEARCH_TEST_MILVUS_URI")
    if given:
        yield given
        return
    if lite_series() < 3:
        with _lite25_server(data_dir) as uri:
            yield uri
        return
    port = _free_port()
    log_path = data_dir / "server.log"
    command = [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data_dir / "data")]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _ready(uri):
            if process.poll() is not None or time.monotonic() > deadline:
                output = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"Milvus Lite did not start on {uri}:\n{output}")
            time.sleep(0.2)
        yield uri
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def lite_series() -> int:
    """The major version of the installed milvus-lite (2 or 3)."""
    from importlib.metadata import version

    return int(version("milvus-lite").split(".")[0])


@contextmanager
def _lite25_server(data_dir: Path) -> Iterator[str]:
    """Milvus Lite 2.5's server binary on a free loopback port."""
    from milvus_lite.server import Server

    port = _free_port()
    server = Server(str(data_dir / "milvus.db"), address=f"127.0.0.1:{port}")
    uri = f"http://127.0.0.1:{port}"
    if not server.start():
        raise RuntimeError(f"Milvus Lite 2.5 did not start on {uri}")
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _ready(uri):
            if time.monotonic() > deadline:
                raise RuntimeError(f"Milvus Lite 2.5 did not answer on {uri}")
            time.sleep(0.2)
        yield uri
    finally:
        process = server._p  # Server.stop waits 2 s, then kills; terminate it first
        if process is not None:
            process.terminate()
        server.stop()
