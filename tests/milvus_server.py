"""A Milvus Lite server for the tests: one process per session, reached by URI like a cluster.

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
        client.get_server_version()
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
