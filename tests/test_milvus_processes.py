"""A Milvus build written by one process and searched by another, through the CLI
(a subprocess each, the CLI of ``python -m mmsearch`` with the fake encoders).

Loading a collection is server state, not data: Milvus Lite with a file URI starts
every process with its collections released, and a server forgets what it loaded when
it restarts. A store opened by a new process must load what it reads; and whatever
Milvus says when it cannot serve (unreachable, not loaded, a refusal) reaches the user
as one line, never a pymilvus traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mmsearch.errors import MMSearchError

from conftest import COLOURS, save_image, write_jsonl

pytestmark = pytest.mark.milvus
pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")
CLI_TIMEOUT_S = 300
# The CLI as ``python -m mmsearch`` runs it, with the tests' fake encoders registered.
RUNNER = (
    f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import conftest; "
    "from mmsearch.cli import app; app()"
)


def _catalog(folder: Path) -> Path:
    rows: list[dict[str, Any]] = []
    for n, (colour, rgb) in enumerate(COLOURS.items()):
        save_image(folder / "img" / f"{colour}.png", rgb)
        rows.append(
            {
                "id": f"item-{n}",
                "title": f"{colour} ceramic mug",
                "category": "kitchen" if n % 2 == 0 else "office",
                "image": [f"img/{colour}.png"],
            }
        )
    return write_jsonl(folder / "catalog.jsonl", rows)


def _env(home: Path, uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMSEARCH_")}
    env.update(
        MMSEARCH_HOME=str(home),
        MMSEARCH_BACKEND="milvus",
        MMSEARCH_MILVUS_URI=uri,
        MMSEARCH_TEXT_ENCODER="fake-text",
        MMSEARCH_IMAGE_ENCODER="fake-image",
        COLUMNS="200",
    )
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUNNER, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


def _search(env: dict[str, str], query: str) -> list[str]:
    done = _cli(env, "search", query, "-c", "shop", "--json", "--k", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    return [hit["id"] for hit in json.loads(done.stdout)["hits"]]


def _released(uri: str) -> None:
    """What a server restart does to loads: every collection of the server released."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri)
    for name in client.list_collections():
        client.release_collection(name)
        assert str(client.get_load_state(name)["state"].name) == "NotLoad"
    client.close()


@pytest.mark.parametrize("kind", ["file", "server"])
def test_a_second_process_searches_what_the_first_ingested(kind, tmp_path, request):
    file_uri = str(tmp_path / "milvus.db")
    uri = file_uri if kind == "file" else request.getfixturevalue("milvus_uri")
    env = _env(tmp_path / "ws", uri)
    done = _cli(env, "ingest", str(_catalog(tmp_path / "cat")), "-c", "shop")
    assert done.returncode == 0, done.stderr[-3000:]
    if kind == "server":
        _released(uri)
    assert _search(env, "blue mug")[0] == "item-2"
    assert _search(env, "green")[0] == "item-1"  # the next process finds it loaded


def test_an_unreachable_server_is_a_message_not_a_traceback(tmp_path):
    """The build's manifest names a server that is down: the CLI says so in a line."""
    from mmsearch.workspace import Workspace

    home = tmp_path / "ws"
    env = _env(home, str(tmp_path / "milvus.db"))
    assert _cli(env, "ingest", str(_catalog(tmp_path / "cat")), "-c", "shop").returncode == 0
    collection = Workspace(home).collection("shop")
    manifest = collection.live_manifest()
    dead = "http://127.0.0.1:9"  # discard: nothing listens
    manifest.store = manifest.store.model_copy(update={"uri": dead})
    collection.write_manifest(manifest.build_id, manifest)
    done = _cli(env, "search", "blue mug", "-c", "shop")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    assert f"Cannot reach Milvus at {dead}" in " ".join((done.stderr + done.stdout).split())


def test_store_errors_are_mmsearch_errors_with_the_servers_words():
    from pymilvus.exceptions import MilvusException

    from mmsearch.index.milvus_client import (
        GuardedClient,
        MilvusRequestError,
        MilvusStoreError,
    )

    class Failing:
        def __init__(self, exc: Exception):
            self.exc = exc

        def search(self, *args: Any, **kwargs: Any) -> Any:
            raise self.exc

    import grpc

    class Grpc(grpc.RpcError):
        def __init__(self, status: grpc.StatusCode, details: str):
            self.status, self.text = status, details

        def code(self) -> grpc.StatusCode:
            return self.status

        def details(self) -> str:
            return self.text

    released = MilvusException(101, "Collection 'c' is in state 'released'; call load()")
    cases = [
        (released, MilvusStoreError, "could not search c: Collection 'c' is in state"),
        (MilvusException(100, "collection 'c' does not exist"), MilvusStoreError, "not exist"),
        (MilvusException(2, "Fail connecting"), MilvusStoreError, "Cannot reach Milvus at u"),
        (ConnectionRefusedError("refused"), MilvusStoreError, "Cannot reach Milvus at u"),
        (MilvusException(6, "unknown field 'x'\nmore"), MilvusRequestError, "refused to search"),
        (Grpc(grpc.StatusCode.UNAVAILABLE, "connection reset"), MilvusStoreError, "reset"),
        (Grpc(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!"), MilvusRequestError, "not"),
    ]
    for exc, kind, words in cases:
        with pytest.raises(kind) as raised:
            GuardedClient(Failing(exc), "u").search("c", data=[])
        assert isinstance(raised.value, MMSearchError)
        assert words in str(raised.value) and "\n" not in str(raised.value)
