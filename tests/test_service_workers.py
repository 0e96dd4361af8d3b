"""``mmsearch serve --workers 2``: what one worker learns, the other honours.

A real server with two worker processes on loopback (``tests/cli_with_fakes.py``, so the
workers know the fake encoders), driven by concurrent HTTP clients. Which worker
answered a request is read from the server's own JSON access log: every line carries
the request id the test sent and the pid of the process that wrote it. Each test first
checks that its requests did reach both workers, so what it shows is cross-worker.
"""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mmsearch.config import Settings
from mmsearch.governance.keys import KeyStore
from mmsearch.ingest import IngestOptions, Ingestor
from test_cli_server import WITH_FAKES, child_env, free_port

from conftest import COLOURS, save_image, write_jsonl

pytestmark = pytest.mark.processes

STARTUP_S = 180.0
CLIENTS = 8


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    request_id: str


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    admin: str
    writer: str
    catalog: Path
    metrics_dir: Path | None = None  # the workers' PROMETHEUS_MULTIPROC_DIR, once seen

    def call(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        request_id = uuid.uuid4().hex
        sent = {"X-Request-ID": request_id, **(headers or {})}
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data, sent, method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                raw, status, got = response.read(), response.status, dict(response.headers)
        except urllib.error.HTTPError as error:
            raw, status, got = error.read(), error.code, dict(error.headers)
        parsed = json.loads(raw) if raw.startswith((b"{", b"[")) else {"text": raw.decode()}
        return Reply(status, parsed, {k.lower(): v for k, v in got.items()}, request_id)

    def many(self, count: int, send: Any) -> list[Reply]:
        """``count`` calls of ``send()`` from ``CLIENTS`` concurrent clients (each call opens
        its own connection, so the kernel hands them to whichever worker accepts first)."""
        with ThreadPoolExecutor(CLIENTS) as pool:
            return list(pool.map(lambda _: send(), range(count)))

    def pids(self, replies: list[Reply]) -> dict[str, int]:
        """The pid of the worker that answered each reply, from the access log."""
        wanted = {reply.request_id for reply in replies}
        found: dict[str, int] = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for line in self.log.read_text(errors="replace").splitlines():
                if not line.startswith("{"):
                    continue
                entry = json.loads(line)
                if entry.get("logger") == "mmsearch.access" and entry.get("request_id") in wanted:
                    found[entry["request_id"]] = entry["pid"]
            if len(found) == len(wanted):
                break
            time.sleep(0.2)
        return found


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    total = 0.0
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    for line in text.splitlines():
        named = line.startswith(name + "{") or line.startswith(name + " ")
        if named and all(part in line for part in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("workers")
    rows: list[dict[str, object] | str] = []
    for index, (colour, rgb) in enumerate(COLOURS.items()):
        save_image(root / "catalog" / "img" / f"{colour}.png", rgb)
        rows.append(
            {
                "id": f"item-{index}",
                "title": f"{colour} ceramic mug",
                "category": "kitchen" if index % 2 == 0 else "office",
                "image": f"img/{colour}.png",
            }
        )
    catalog = write_jsonl(root / "catalog" / "catalog.jsonl", rows)
    settings = Settings(home=root / "home", text_encoder="fake-text", image_encoder="fake-image")
    Ingestor(settings).run(IngestOptions(catalog, "shop"))
    keys = KeyStore(settings.home)
    _, admin = keys.create("admin", name="admin")
    _, writer = keys.create("writer", name="writer")
    port = free_port()
    log = root / "serve.log"
    env = child_env(
        MMSEARCH_ALLOWED_ROOTS=json.dumps([str(root / "catalog")]),
        MMSEARCH_RATE_LIMIT_PER_MINUTE="100000",
        MMSEARCH_RATE_LIMIT_BURST="10000",
    )
    command = [*WITH_FAKES, "serve", "--home", str(settings.home), "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--workers", "2", "--no-warm"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    served = Server(f"http://127.0.0.1:{port}", process, log, admin, writer, catalog)
    try:
        wait_for_both_workers(served)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # uvicorn stops its workers, then itself
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
    if served.metrics_dir is not None:
        assert not served.metrics_dir.exists(), "serve removes the metrics folder on stop"


def wait_for_both_workers(server: Server) -> None:
    """Until each worker has answered a search (models loaded in both)."""
    deadline = time.monotonic() + STARTUP_S
    seen: set[int] = set()
    while time.monotonic() < deadline and len(seen) < 2:
        assert server.process.poll() is None, server.log.read_text()
        try:
            replies = server.many(4, lambda: search(server, server.admin))
        except OSError:
            time.sleep(0.5)
            continue
        answered = [reply for reply in replies if reply.status == 200]
        seen |= set(server.pids(answered).values())
    assert len(seen) == 2, f"both workers never answered: {server.log.read_text()[-3000:]}"


def warm_key(server: Server, key: str) -> None:
    """Use a key one request at a time until both workers have verified it.

    A key's first check in a worker runs argon2, charged meanwhile to the client's shared
    failure budget (5 at once by default): a burst of first uses from one address is
    throttled, as it would be from a guesser. Once verified, a worker remembers it."""
    seen: set[int] = set()
    for _ in range(60):
        reply = server.call("GET", "/v1/collections", key=key)
        if reply.status == 200:
            seen |= set(server.pids([reply]).values())
        if len(seen) == 2:
            return
    raise AssertionError("the key never reached both workers")


def search(server: Server, key: str | None, headers: dict[str, str] | None = None) -> Reply:
    return server.call(
        "POST", "/v1/collections/shop/search", key=key, body={"text": "red mug"}, headers=headers
    )


def both_workers(server: Server, replies: list[Reply]) -> set[int]:
    pids = server.pids(replies)
    assert len(pids) == len(replies), "every request has its access-log line"
    workers = set(pids.values())
    assert len(workers) == 2, f"all {len(replies)} requests reached one worker: {workers}"
    return workers


def test_a_session_made_on_one_worker_works_on_both_until_signed_out(server: Server) -> None:
    login = server.call("POST", "/v1/session", body={"key": server.writer})
    assert login.status == 200, login.body
    cookie = login.headers["set-cookie"].split(";", 1)[0]
    csrf = login.body["csrf_token"]

    reads = server.many(
        40, lambda: server.call("GET", "/v1/collections", headers={"Cookie": cookie})
    )
    assert [r.status for r in reads] == [200] * 40
    writes = server.many(40, lambda: search(server, None, {"Cookie": cookie, "X-CSRF-Token": csrf}))
    assert [r.status for r in writes] == [200] * 40
    assert all(r.body["hits"] for r in writes)
    both_workers(server, reads + writes)
    forged = server.many(
        10, lambda: search(server, None, {"Cookie": cookie, "X-CSRF-Token": csrf[:-2] + "xx"})
    )
    assert {r.status for r in forged} == {403}

    out = server.call("DELETE", "/v1/session", headers={"Cookie": cookie})
    assert out.status == 200
    after = server.many(30, lambda: search(server, None, {"Cookie": cookie, "X-CSRF-Token": csrf}))
    assert {r.status for r in after} == {401}, "a signed-out session works on no worker"
    both_workers(server, after)


def test_b_a_job_started_through_one_worker_is_seen_by_both(server: Server) -> None:
    started = server.call(
        "POST",
        "/v1/collections/mugs/ingest",
        key=server.admin,
        body={"catalog": str(server.catalog)},
    )
    assert started.status == 202, started.body
    job_id = started.body["id"]
    polls: list[Reply] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        batch = server.many(16, lambda: server.call("GET", f"/v1/jobs/{job_id}", key=server.admin))
        polls += batch
        assert {r.status for r in batch} == {200}, [r.body for r in batch if r.status != 200]
        if all(r.body["status"] in ("succeeded", "failed") for r in batch):
            break
        time.sleep(0.3)
    both_workers(server, polls)
    final = polls[-1].body
    assert final["status"] == "succeeded", final
    assert final["processed"] == final["total"] == len(COLOURS)
    assert final["report"]["counts"]["items"] == len(COLOURS)
    lists = server.many(16, lambda: server.call("GET", "/v1/jobs", key=server.admin))
    both_workers(server, lists)
    for reply in lists:
        assert [job["id"] for job in reply.body["jobs"]] == [job_id]
        assert reply.body["jobs"][0]["status"] == "succeeded"
    # A writer sees only the jobs it started, on either worker.
    warm_key(server, server.writer)
    theirs = server.many(16, lambda: server.call("GET", "/v1/jobs", key=server.writer))
    assert all(reply.body["jobs"] == [] for reply in theirs)
    hidden = server.many(8, lambda: server.call("GET", f"/v1/jobs/{job_id}", key=server.writer))
    assert {r.status for r in hidden} == {404}


def test_c_metrics_add_up_every_workers_requests(server: Server) -> None:
    def scrape() -> str:
        reply = server.call("GET", "/metrics", key=server.admin)
        assert reply.status == 200
        return str(reply.body["text"])

    route = "/v1/collections/{name}/search"
    before = scrape()
    sent = server.many(60, lambda: search(server, server.admin))
    assert {r.status for r in sent} == {200}
    both_workers(server, sent)
    for text in (scrape(), scrape()):  # each scrape may reach either worker: same sums
        counted = metric_sum(text, "mmsearch_http_requests_total", route=route, status="200")
        assert (
            counted - metric_sum(before, "mmsearch_http_requests_total", route=route, status="200")
            == 60
        )
        searches = metric_sum(text, "mmsearch_searches_total", collection="shop")
        assert searches - metric_sum(before, "mmsearch_searches_total", collection="shop") == 60
        assert metric_sum(text, "mmsearch_search_stage_seconds_count", stage="total") >= 60
        assert f'mmsearch_collection_items{{collection="shop"}} {len(COLOURS)}.0' in text
    unauthorised = server.many(8, lambda: server.call("GET", "/metrics", key=server.writer))
    assert {r.status for r in unauthorised} == {403}
    # The values live in the folder serve made for this run: owner-only, a file per worker.
    workers = both_workers(server, sent)
    environ = Path(f"/proc/{min(workers)}/environ").read_bytes().split(b"\0")
    found = [v for v in environ if v.startswith(b"PROMETHEUS_MULTIPROC_DIR=")]
    folder = Path(found[0].split(b"=", 1)[1].decode())
    server.metrics_dir = folder
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {f"counter_{pid}.db" for pid in workers} <= {p.name for p in folder.iterdir()}


def test_d_wrong_keys_share_one_failure_budget_across_workers(server: Server) -> None:
    """Wrong secrets for one key id (well formed, so each would cost argon2): the workers
    charge the same budget, so no more than its burst (5 with the default 20 a minute)
    plus what refilled meanwhile are checked, however many workers take the attempts."""
    key_id = server.admin.split("_")[2]
    wrong = f"mms_k_{key_id}_" + "A" * 43
    started = time.monotonic()
    attempts = server.many(40, lambda: server.call("POST", "/v1/session", body={"key": wrong}))
    seconds = time.monotonic() - started
    both_workers(server, attempts)
    statuses = [reply.status for reply in attempts]
    assert set(statuses) <= {401, 429}
    refilled = int(seconds * 20 / 60) + 1
    checked = statuses.count(401)
    assert 1 <= checked <= 5 + refilled, (checked, seconds)
    throttled = [reply for reply in attempts if reply.status == 429]
    assert throttled and all(int(reply.headers["retry-after"]) >= 1 for reply in throttled)


def test_e_request_budgets_are_kept_in_files_both_workers_charge(server: Server) -> None:
    """``serve --workers 2`` tells its workers so: they keep each caller's request budget
    in the workspace's shared files, not in their own memory."""
    replies = server.many(8, lambda: search(server, server.admin))
    assert all(reply.status == 200 for reply in replies)
    both_workers(server, replies)
    folder = server.log.parent / "home" / "auth" / "requests"
    assert folder.is_dir() and any(folder.iterdir())
