"""``mmsearch search`` answered by a running ``mmsearch serve``: real processes, real HTTP.

The server and every search run as subprocesses, as a user runs them. Processes that
encode (the server, searches that fall back to this machine's own process) start
``tests/cli_with_fakes.py``, the real CLI with the fake encoders registered; searches
that a server answers start the real ``python -m mmsearch``, which needs no encoder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mmsearch.commands import remote
from mmsearch.commands.results import SIGNALS
from mmsearch.commands.server_file import (
    ServerRecord,
    read_record,
    record_path,
    remove_record,
    write_record,
)
from mmsearch.config import Settings
from mmsearch.governance.keys import KeyStore
from mmsearch.ingest import IngestOptions, Ingestor

from conftest import COLOURS, save_image, write_jsonl

pytestmark = pytest.mark.processes

HERE = Path(__file__).resolve().parent
WITH_FAKES = [sys.executable, str(HERE / "cli_with_fakes.py")]
REAL_CLI = [sys.executable, "-m", "mmsearch"]
QUERY = ["search", "red mug", "-c", "shop", "--json"]
STARTUP_S = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """No MMSEARCH_* setting of the caller's (a server URL or key would change the route)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMSEARCH_")}
    return {**env, "COLUMNS": "200", **extra}


def run(
    command: list[str], *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, *map(str, args)],
        capture_output=True,
        text=True,
        env=env or child_env(),
        timeout=180,
        check=False,
    )


def hits_of(done: subprocess.CompletedProcess[str]) -> list[tuple[str, float]]:
    assert done.returncode == 0, done.stderr
    return [(hit["id"], hit["score"]) for hit in json.loads(done.stdout)["hits"]]


@dataclass
class Served:
    home: Path
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def start_server(home: Path, command: list[str], *extra: str) -> Served:
    port = free_port()
    log = home.parent / f"serve-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "serve", "--home", str(home), "--port", str(port), *extra],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_env(),
        )
    return Served(home, f"http://127.0.0.1:{port}", process, log)


def wait_healthy(served: Served) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        assert served.process.poll() is None, served.log.read_text()
        try:
            with urllib.request.urlopen(served.url + "/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"the server did not answer in {STARTUP_S} s: {served.log.read_text()}")


def stop(served: Served, sig: signal.Signals = signal.SIGINT) -> int:
    if served.process.poll() is None:
        served.process.send_signal(sig)
        try:
            return served.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            served.process.kill()
    return served.process.wait(timeout=30)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with one small collection, built with the fake encoders."""
    root = tmp_path_factory.mktemp("cli-server")
    rows: list[dict[str, object] | str] = []
    for index, (colour, rgb) in enumerate(COLOURS.items()):
        save_image(root / "catalog" / "img" / f"{colour}.png", rgb)
        rows.append(
            {
                "id": f"item-{index}",
                "title": f"{colour} ceramic mug",
                "description": f"A {colour} mug for coffee",
                "category": "kitchen" if index % 2 == 0 else "office",
                "price": 5.0 + index,
                "image": f"img/{colour}.png",
            }
        )
    catalog = write_jsonl(root / "catalog" / "catalog.jsonl", rows)
    settings = Settings(home=root / "home", text_encoder="fake-text", image_encoder="fake-image")
    Ingestor(settings).run(IngestOptions(catalog, "shop"))
    return settings.home


@pytest.fixture(scope="module")
def servers(shop: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Served]]:
    """The shop's server, and a bare one (real CLI, empty workspace) for the stop test:
    both start at once, so their start-up times overlap."""
    started = [
        start_server(shop, WITH_FAKES, "--log-level", "warning"),
        start_server(tmp_path_factory.mktemp("bare") / "home", REAL_CLI, "--log-level", "warning"),
    ]
    try:
        for served in started:
            wait_healthy(served)
        yield started
    finally:
        for served in started:
            stop(served)


@pytest.fixture(scope="module")
def server(servers: list[Served]) -> Served:
    return servers[0]


@pytest.fixture(scope="module")
def local_hits(shop: Path, server: Served) -> list[tuple[str, float]]:
    """What a search in its own process finds (--local: the running server is not used)."""
    done = run(WITH_FAKES, *QUERY, "--home", shop, "--local")
    assert "answered by" not in done.stderr
    hits = hits_of(done)
    assert hits and hits[0][0] == "item-0"  # the red mug
    return hits


def note(url: str) -> str:
    return f"answered by the server at {url} (--local to search in this process)"


def test_a_search_finds_the_workspace_server_and_answers_as_in_process(
    shop: Path, server: Served, local_hits: list[tuple[str, float]]
) -> None:
    done = run(REAL_CLI, *QUERY, "--home", shop)
    assert note(server.url) in done.stderr
    assert hits_of(done) == local_hits  # ids, order and scores
    answer = json.loads(done.stdout)  # the CLI's shape: no transport-only fields
    assert "query_id" not in answer and "item_url" not in answer["hits"][0]
    assert answer["hits"][0]["images"] == [
        f"{server.url}/v1/collections/shop/items/item-0/images/0"
    ]
    table = run(REAL_CLI, "search", "red mug", "-c", "shop", "--home", shop, "--explain")
    assert table.returncode == 0, table.stderr
    assert "red ceramic mug" in table.stdout and "text_vector" in table.stdout
    assert "#1 item-0  rrf" in table.stdout  # the explanations came back typed
    assert note(server.url) in table.stderr and note(server.url) not in table.stdout


def test_b_a_named_server_answers_for_a_workspace_that_lacks_the_collection(
    tmp_path: Path, server: Served, local_hits: list[tuple[str, float]]
) -> None:
    done = run(REAL_CLI, *QUERY, "--home", tmp_path / "elsewhere", "--server", server.url)
    assert note(server.url) in done.stderr
    assert hits_of(done) == local_hits
    by_env = run(
        REAL_CLI,
        *QUERY,
        "--home",
        tmp_path / "elsewhere",
        env=child_env(MMSEARCH_SERVER=server.url),
    )
    assert hits_of(by_env) == local_hits


def test_b_an_image_query_travels_to_the_server(shop: Path, server: Served) -> None:
    image = shop.parent / "catalog" / "img" / "blue.png"
    done = run(REAL_CLI, "search", "-c", "shop", "--json", "--home", shop, "--image", image)
    assert note(server.url) in done.stderr
    top = json.loads(done.stdout)["hits"][0]
    assert (top["id"], top["duplicate"]) == ("item-2", "exact")  # the same bytes


def test_c_a_stale_server_file_is_ignored_and_the_search_runs_here(
    shop: Path, server: Served, local_hits: list[tuple[str, float]], tmp_path: Path
) -> None:
    home = tmp_path / "copy"
    shutil.copytree(shop, home, ignore=shutil.ignore_patterns("server.json"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = read_record(shop)
    assert live is not None
    # The live server's URL and id, but the pid of a process that has ended.
    stale = live.model_copy(update={"pid": dead.pid, "home": str(home.resolve())})
    write_record(stale)
    done = run(WITH_FAKES, *QUERY, "--home", home)
    assert "answered by" not in done.stderr
    assert hits_of(done) == local_hits
    assert read_record(home) == stale  # ignored, not deleted


def test_c_discovery_trusts_a_record_only_for_the_server_that_wrote_it(
    shop: Path, server: Served, tmp_path: Path
) -> None:
    live = read_record(shop)
    assert live is not None
    settings = Settings(home=shop)
    found = remote.discovered_server(settings, None)
    assert found == remote.Server(server.url, None, explicit=False)
    home = tmp_path / "other"
    home.mkdir()
    other = Settings(home=home)
    for change in (
        {"server_id": "0" * 32},  # a process that took the port later
        {"home": str(shop)},  # a copied workspace: its record names the original
        {"url": server.url.replace("127.0.0.1", "192.0.2.1")},  # not loopback
        {"version": "0.0.1"},  # started before an upgrade
        {},  # the control: all else right
    ):
        changed = live.model_copy(update={"home": str(home.resolve()), **change})
        record_path(home).write_text(changed.model_dump_json(), encoding="utf-8")
        found = remote.discovered_server(other, None)
        assert (found is not None) == (change == {}), change


def test_d_a_bad_filter_is_a_user_error_with_the_servers_message(
    shop: Path, server: Served, tmp_path: Path
) -> None:
    # This workspace lacks the collection, so only the server can judge the filter.
    done = run(
        REAL_CLI, *QUERY, "--home", tmp_path, "--server", server.url, "--where", "colour = 'red'"
    )
    assert done.returncode == 2 and done.stdout == ""
    assert "colour" in done.stderr and "Traceback" not in done.stderr
    # A discovered server's workspace is this one: the filter fails before any request.
    here = run(REAL_CLI, *QUERY, "--home", shop, "--where", "price <")
    assert here.returncode == 2 and "answered by" not in here.stderr
    assert "syntax error at position 7" in here.stderr


def test_d_a_named_server_that_does_not_answer_is_an_error_naming_it(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = run(REAL_CLI, *QUERY, "--home", tmp_path, "--server", url)
    assert done.returncode == 2
    assert url in done.stderr and "--local" in done.stderr and "Traceback" not in done.stderr


def test_e_the_record_names_the_serving_process_and_goes_when_it_stops(
    servers: list[Served],
) -> None:
    bare = servers[1]
    record = read_record(bare.home)
    assert record is not None
    assert (record.pid, record.url) == (bare.process.pid, bare.url)
    assert stat.S_IMODE(record_path(bare.home).stat().st_mode) == 0o600
    with urllib.request.urlopen(bare.url + "/healthz", timeout=5) as response:
        assert response.headers[remote.SERVER_ID_HEADER] == record.server_id
    # uvicorn stops gracefully on SIGTERM, then dies of the signal: the record goes first.
    assert stop(bare, signal.SIGTERM) == -signal.SIGTERM
    assert not record_path(bare.home).exists()


def test_e_with_workers_the_parent_is_recorded_and_removes_the_record(tmp_path: Path) -> None:
    served = start_server(tmp_path / "home", REAL_CLI, "--workers", "2", "--log-level", "warning")
    try:
        deadline = time.monotonic() + STARTUP_S
        while read_record(served.home) is None and time.monotonic() < deadline:
            assert served.process.poll() is None, served.log.read_text()
            time.sleep(0.1)
        record = read_record(served.home)
        assert record is not None and record.pid == served.process.pid
    finally:
        stop(served, signal.SIGINT)
    assert not record_path(served.home).exists()


def test_e_a_record_replaced_by_another_server_is_left_to_it(tmp_path: Path) -> None:
    mine = ServerRecord.for_this_process("127.0.0.1", 8000, tmp_path)
    write_record(mine.model_copy(update={"pid": mine.pid + 1}))  # another server's now
    assert not remove_record(tmp_path, mine.pid)
    assert record_path(tmp_path).exists()
    write_record(mine)
    assert remove_record(tmp_path, mine.pid) and not record_path(tmp_path).exists()


def test_f_with_keys_a_search_without_one_runs_here_and_with_one_on_the_server(
    shop: Path, server: Served, local_hits: list[tuple[str, float]]
) -> None:
    keys = KeyStore(shop)
    _, secret = keys.create("admin", name="cli-server-test")
    try:
        without = run(WITH_FAKES, *QUERY, "--home", shop)
        assert (
            "refused the search" in without.stderr and "searching in this process" in without.stderr
        )
        assert hits_of(without) == local_hits
        with_key = run(REAL_CLI, *QUERY, "--home", shop, "--api-key", secret)
        assert note(server.url) in with_key.stderr
        assert hits_of(with_key) == local_hits
        named = run(REAL_CLI, *QUERY, "--home", shop, "--server", server.url)
        assert named.returncode == 2
        assert "--api-key" in named.stderr and "MMSEARCH_API_KEY" in named.stderr
    finally:
        keys.path.unlink()  # no key ever existed: the other tests' server needs none


def test_g_the_server_path_imports_no_store_model_or_numpy(shop: Path, server: Served) -> None:
    done = run([sys.executable, "-X", "importtime", "-m", "mmsearch"], *QUERY, "--home", shop)
    assert done.returncode == 0 and note(server.url) in done.stderr
    imported = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "mmsearch" in imported and "http" in imported  # the probe sees imports
    heavy = {"lancedb", "torch", "sentence_transformers", "numpy", "pyarrow", "PIL", "sqlglot"}
    assert not imported & heavy


def test_light_copies_agree_with_their_sources() -> None:
    from mmsearch.ranking.pipeline import OFF
    from mmsearch.retrieval.planner import SIGNALS as PLANNED
    from mmsearch.service.routers.health import SERVER_ID_HEADER
    from mmsearch.service.schemas import SearchBody

    assert SIGNALS == PLANNED
    assert remote.SERVER_ID_HEADER == SERVER_ID_HEADER
    assert remote.OFF == OFF
    bound: Any = next(m for m in SearchBody.model_fields["k"].metadata if hasattr(m, "le"))
    assert bound.le == remote.API_MAX_K
