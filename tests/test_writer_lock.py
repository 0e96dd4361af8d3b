"""The collection writer lock with real processes and threads: who waits, who is refused,
what a killed holder leaves behind, and how the service answers while it is held."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mmsearch.writer_lock import (
    HOLDER_NAME,
    LOCK_NAME,
    CollectionBusy,
    WriterInfo,
    collection_writer,
    read_holder,
)

# Takes the lock, says so, and keeps it until told to let go (or a minute passes).
HOLDER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mmsearch.writer_lock import collection_writer

    folder, purpose, signals = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    with collection_writer(folder, purpose=purpose):
        (signals / "held").write_text("yes")
        deadline = time.monotonic() + 60
        while not (signals / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    """
)

# One attempt without waiting; prints "free" or "busy".
PROBE_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from mmsearch.writer_lock import CollectionBusy, collection_writer

    try:
        with collection_writer(Path(sys.argv[1]), purpose="probe", wait=False):
            print("free")
    except CollectionBusy:
        print("busy")
    """
)


class Holder:
    """A separate process holding a collection's writer lock."""

    def __init__(self, folder: Path, signals: Path, purpose: str):
        self.signals = signals
        signals.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER_SCRIPT, str(folder), purpose, str(signals)]
        )
        deadline = time.monotonic() + 20
        while not (signals / "held").exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the holder process did not take the lock")
            time.sleep(0.01)

    @property
    def pid(self) -> int:
        return self.process.pid

    def release(self) -> None:
        (self.signals / "release").write_text("go")
        self.process.wait(timeout=20)

    def release_later(self, delay_s: float) -> threading.Timer:
        timer = threading.Timer(delay_s, lambda: (self.signals / "release").write_text("go"))
        timer.start()
        return timer


@contextmanager
def holding(
    folder: Path, signals: Path, purpose: str = "mmsearch ingest catalog.csv"
) -> Iterator[Holder]:
    holder = Holder(folder, signals, purpose)
    try:
        yield holder
    finally:
        if holder.process.poll() is None:
            holder.release()


def probe(folder: Path) -> str:
    """What another process sees right now: "free" or "busy"."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE_SCRIPT, str(folder)],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    return result.stdout.strip()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "collections" / "shop"


def test_the_lock_file_and_missing_parent_folders_are_created(folder):
    with collection_writer(folder, purpose="first ingest"):
        assert (folder / LOCK_NAME).is_file()
        holder = read_holder(folder)
        assert holder is not None and holder.pid == os.getpid()
        assert holder.purpose == "first ingest" and holder.since.endswith("+00:00")
    assert not (folder / HOLDER_NAME).exists()
    assert probe(folder) == "free"


def test_another_process_waits_and_on_wait_is_told_once_who_holds_it(folder, tmp_path):
    seen: list[WriterInfo | None] = []
    with holding(folder, tmp_path / "signals") as holder:
        holder.release_later(0.6)
        started = time.monotonic()
        with collection_writer(folder, purpose="second", on_wait=seen.append):
            waited = time.monotonic() - started
            assert read_holder(folder).purpose == "second"  # type: ignore[union-attr]
        holder.process.wait(timeout=20)
    assert waited >= 0.4
    assert len(seen) == 1 and seen[0] is not None
    assert (seen[0].pid, seen[0].purpose) == (holder.pid, "mmsearch ingest catalog.csv")


def test_on_wait_is_not_called_when_the_lock_is_free(folder):
    seen: list[WriterInfo | None] = []
    with collection_writer(folder, purpose="alone", on_wait=seen.append):
        pass
    assert seen == []


def test_no_wait_is_refused_at_once_naming_the_collection_and_the_holder(folder, tmp_path):
    seen: list[WriterInfo | None] = []
    with holding(folder, tmp_path / "signals") as holder:
        started = time.monotonic()
        with (
            pytest.raises(CollectionBusy) as caught,
            collection_writer(folder, purpose="second", wait=False, on_wait=seen.append),
        ):
            pytest.fail("the lock was taken twice")
        assert time.monotonic() - started < 1.0
    message = str(caught.value)
    assert "Collection 'shop' is being written by" in message
    assert f"pid {holder.pid}" in message and "mmsearch ingest catalog.csv" in message
    assert "without --no-wait" in message
    assert caught.value.holder is not None and caught.value.holder.pid == holder.pid
    assert seen == []


def test_a_timeout_gives_up_after_about_that_long(folder, tmp_path):
    seen: list[WriterInfo | None] = []
    with holding(folder, tmp_path / "signals") as holder:
        started = time.monotonic()
        with (
            pytest.raises(CollectionBusy, match=r"waited 0\.5 s") as caught,
            collection_writer(folder, purpose="second", timeout_s=0.5, on_wait=seen.append),
        ):
            pytest.fail("the lock was taken twice")
        elapsed = time.monotonic() - started
    assert 0.45 <= elapsed < 3.0
    assert f"pid {holder.pid}" in str(caught.value)
    assert len(seen) == 1


def test_the_same_thread_reenters_and_keeps_the_lock_until_the_outer_block_ends(folder):
    with collection_writer(folder, purpose="service: PUT item a"):
        with (
            collection_writer(folder, purpose="ingest", wait=False),
            collection_writer(folder, purpose="ingest again", timeout_s=0.1),
        ):
            assert probe(folder) == "busy"
        assert probe(folder) == "busy"  # the outer hold survives the inner release
        assert read_holder(folder).purpose == "service: PUT item a"  # type: ignore[union-attr]
    assert probe(folder) == "free"
    assert not (folder / HOLDER_NAME).exists()


def test_another_thread_of_the_same_process_waits(folder):
    refused: list[CollectionBusy] = []
    acquired = threading.Event()

    def refused_then_waits() -> None:
        try:
            with collection_writer(folder, purpose="thread", wait=False):
                pass
        except CollectionBusy as exc:
            refused.append(exc)
        with collection_writer(folder, purpose="thread"):
            acquired.set()

    with collection_writer(folder, purpose="main thread"):
        other = threading.Thread(target=refused_then_waits)
        other.start()
        assert not acquired.wait(0.5)
    other.join(timeout=20)
    assert acquired.is_set()
    assert len(refused) == 1 and refused[0].holder is not None
    assert refused[0].holder.pid == os.getpid() and refused[0].holder.purpose == "main thread"


def test_a_killed_holder_releases_the_lock_and_its_stale_record_blocks_nobody(folder, tmp_path):
    holder = Holder(folder, tmp_path / "signals", "killed ingest")
    os.kill(holder.pid, signal.SIGKILL)
    holder.process.wait(timeout=20)
    stale = json.loads((folder / HOLDER_NAME).read_text(encoding="utf-8"))
    assert stale["pid"] == holder.pid  # left behind: the holder had no chance to remove it

    with collection_writer(folder, purpose="after the crash", wait=False):
        assert read_holder(folder).pid == os.getpid()  # type: ignore[union-attr]
    assert not (folder / HOLDER_NAME).exists()


def test_an_unreadable_record_still_gives_a_message(folder, tmp_path):
    with holding(folder, tmp_path / "signals"):
        (folder / HOLDER_NAME).write_text("{not json", encoding="utf-8")
        with (
            pytest.raises(CollectionBusy, match="another writer") as caught,
            collection_writer(folder, purpose="second", wait=False),
        ):
            pass
    assert caught.value.holder is None


# The service: item writes wait a bounded time, ingest jobs wait as long as it takes.


@pytest.fixture
def client(settings, make_catalog, tmp_path, monkeypatch):
    # Imported here so that the lock's own tests above run without the service stack.
    from mmsearch.service.app import create_app
    from service_support import ingest_shop

    monkeypatch.setattr("mmsearch.service.items.ITEM_WRITE_WAIT_S", 0.5)
    ingest_shop(settings, make_catalog())
    settings = settings.model_copy(update={"allowed_roots": [tmp_path / "cat"]})
    with TestClient(create_app(settings)) as client:
        yield client


def shop_folder(settings) -> Path:
    return settings.home / "collections" / "shop"


def test_item_writes_get_409_while_another_process_writes_and_succeed_after(
    client, settings, tmp_path
):
    record = {"title": "purple teapot", "category": "kitchen", "price": 12.0, "in_stock": True}
    with holding(shop_folder(settings), tmp_path / "signals") as holder:
        started = time.monotonic()
        busy = client.put("/v1/collections/shop/items/new-1", json={"record": record})
        assert time.monotonic() - started >= 0.45
        assert busy.status_code == 409, busy.text
        error = busy.json()["error"]
        assert error["type"] == "WriterBusy"
        assert "being written" in error["message"] and "Retry" in error["message"]
        assert str(holder.pid) not in error["message"]  # who holds it stays internal
        assert "catalog.csv" not in error["message"]
        deleting = client.delete("/v1/collections/shop/items/item-1")
        assert deleting.status_code == 409 and deleting.json()["error"]["type"] == "WriterBusy"

    put = client.put("/v1/collections/shop/items/new-1", json={"record": record})
    assert put.status_code == 200, put.text
    assert put.json()["status"] == "added"
    assert client.delete("/v1/collections/shop/items/item-1").status_code == 200
    assert probe(shop_folder(settings)) == "free"


def test_an_ingest_job_waits_for_the_writer_and_says_so(client, settings, tmp_path):
    catalog = tmp_path / "cat" / "catalog.jsonl"
    with holding(shop_folder(settings), tmp_path / "signals"):
        started = client.post("/v1/collections/shop/ingest", json={"catalog": str(catalog)})
        assert started.status_code == 202, started.text
        url = started.json()["url"]
        job = poll(client, url, lambda j: j["waiting_for_writer"])
        assert job["status"] == "running" and job["processed"] == 0
    job = poll(client, url, lambda j: j["status"] in {"succeeded", "failed"})
    assert job["status"] == "succeeded", job
    assert job["waiting_for_writer"] is False


def poll(client, url, done, limit_s: float = 30.0) -> dict:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        job = client.get(url).json()
        if done(job):
            return job
        time.sleep(0.05)
    raise AssertionError(f"the job did not get there: {job}")


def test_a_new_collection_is_locked_before_it_exists(client, settings, tmp_path):
    """A job creating a collection waits for a writer that is creating the same one."""
    catalog = tmp_path / "cat" / "catalog.jsonl"
    fresh = settings.home / "collections" / "fresh"
    with holding(fresh, tmp_path / "signals"):
        started = client.post("/v1/collections/fresh/ingest", json={"catalog": str(catalog)})
        url = started.json()["url"]
        assert poll(client, url, lambda j: j["waiting_for_writer"])["status"] == "running"
    assert poll(client, url, lambda j: j["status"] != "running")["status"] == "succeeded"
