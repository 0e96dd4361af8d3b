"""SIGKILL in the middle of ``mmsearch ingest``, then the same command again.

A killed run must change nothing readers see, and running the command again must
finish the job without losing a row, writing one twice, encoding again the rows the
killed run had committed, or leaving a build or run behind. Only a real process can
be killed, so these tests run the real CLI in a subprocess, with the real ``minilm``
text encoder (the fake encoders exist only inside the test process). Kills are placed
by progress, not by time: the test polls the run's progress record and kills once it
reports enough rows, so the outcome does not depend on how fast the machine is.

Each ``mmsearch ingest`` process spends most of its time importing the model runtime
and loading the model, so the catalog is small and the runs are few: one killed first
ingest, killed again while it resumes, then completed; and one killed update of the
collection that produced, then completed (five processes in all).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mmsearch.config import Settings
from mmsearch.errors import MMSearchError
from mmsearch.index.open import open_build_index
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher
from mmsearch.workspace import CollectionDir, Workspace

from conftest import write_jsonl

pytestmark = [pytest.mark.integration, pytest.mark.processes]

NAME = "shop"
ROWS = 600
CHUNK_ROWS = 50
FIRST_KILL_ROWS = 150  # the first ingest is killed once this many rows are committed...
SECOND_KILL_ROWS = 350  # ...and its resumption once this many are
UPDATE_START = 300  # the update holds ids 300..899: 300..599 exist (every other changed)
UPDATE_KILL_ROWS = 400
TIMEOUT_S = 180.0


def product(number: int, variant: str = "") -> dict[str, Any]:
    """One catalog row; a ``variant`` changes its text, so an update has rows to encode."""
    prefix = f"{variant} " if variant else ""
    return {
        "id": f"p{number}",
        "title": f"{prefix}blue lamp {number}",
        "description": f"{prefix}a lamp in walnut and brass, item {number}",
        "category": ("kitchen", "office", "garden")[number % 3],
        "price": round(5.5 + number % 90, 2),
    }


def child_env() -> dict[str, str]:
    """The real default encoders, small chunks, no settings from the caller, offline."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MMSEARCH_")}
    env.update(
        MMSEARCH_WRITE_BATCH_ROWS=str(CHUNK_ROWS), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"
    )
    return env


def start_ingest(catalog: Path, home: Path) -> subprocess.Popen[str]:
    command = [
        sys.executable, "-m", "mmsearch", "ingest", str(catalog),
        "-c", NAME, "--home", str(home), "--json",
    ]  # fmt: skip
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        start_new_session=True,  # its own process group: the kill takes all of it
    )


def ingest(catalog: Path, home: Path) -> dict[str, Any]:
    """An uninterrupted run; its JSON report."""
    process = start_ingest(catalog, home)
    stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    assert process.returncode == 0, stderr
    return dict(json.loads(stdout))


def running_records(home: Path) -> list[dict[str, Any]]:
    """Progress records of runs that have not finished."""
    found = []
    for path in (home / "collections" / NAME / "builds").glob("*/runs/*/progress.json"):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # being replaced: read it on the next poll
            continue
        if record.get("state") == "running":
            found.append(record)
    return found


def kill_once_committed(catalog: Path, home: Path, rows: int) -> dict[str, Any]:
    """Start the ingest, SIGKILL it as soon as its progress record reports ``rows``
    rows done (a chunk committed); the record as it was at the kill."""
    process = start_ingest(catalog, home)
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"the ingest ended before {rows} rows were committed")
            done = [r for r in running_records(home) if r.get("rows_done", 0) >= rows]
            if done:
                os.killpg(process.pid, signal.SIGKILL)
                return done[0]
            time.sleep(0.005)
        pytest.fail(f"no progress record reported {rows} rows within {TIMEOUT_S:.0f} s")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


def settings(home: Path) -> Settings:
    """What a reader in this process uses: the workspace only (no model is loaded)."""
    return Settings(home=home)


def collection(home: Path) -> CollectionDir:
    return Workspace(home).collection(NAME)


def latest_index_rows(home: Path, build_id: str) -> dict[str, str]:
    """id → content hash of a build's table at its newest version (what a writer sees)."""
    folder = collection(home)
    index = open_build_index(folder, folder.manifest(build_id), settings(home), for_writing=True)
    return index.content_hashes()


@dataclass
class Live:
    """The live build as readers see it."""

    build_id: str
    table_version: int
    latest_version: int
    ids: list[str]
    titles: dict[str, str]
    hashes: dict[str, str]


def live(home: Path) -> Live:
    """Read through the manifest, as searches do; the latest version only to compare."""
    folder = collection(home)
    manifest = folder.live_manifest()
    index = open_build_index(folder, manifest, settings(home))
    writer = open_build_index(folder, manifest, settings(home), for_writing=True)
    table = index.scan(["id", "title"])
    ids = [str(i) for i in table["id"].to_pylist()]
    return Live(
        build_id=manifest.build_id,
        table_version=int(manifest.table_version or 0),
        latest_version=writer.version(),
        ids=ids,
        titles=dict(zip(ids, table["title"].to_pylist(), strict=True)),
        hashes=index.content_hashes(),
    )


def keyword_hits(home: Path, query: str) -> dict[str, str]:
    """A real search (the keyword signal alone, so the test process loads no model)."""
    searcher = Searcher(settings(home), NAME)
    result = searcher.search(SearchRequest(text=query, k=50, signals=["keyword"]))
    return {hit.id: hit.title for hit in result.hits}


def leftovers(home: Path) -> tuple[list[str], list[str], list[str]]:
    """Build folders neither live nor previous, tables no kept build names, running runs."""
    folder = collection(home)
    kept = set(folder.aliases().values())
    builds = [p.name for p in (folder.folder / "builds").iterdir() if p.name not in kept]
    tables = {folder.manifest(b).table for b in kept}
    stray = [p.stem for p in folder.lancedb_dir.glob("*.lance") if p.stem not in tables]
    runs = [str(r["run_id"]) for r in running_records(home)]
    return builds, stray, runs


@dataclass
class FirstIngest:
    """A new collection's first ingest, killed twice, then completed."""

    catalog: Path
    home: Path
    kills: list[dict[str, Any]]  # progress records at each kill
    after_kills: list[tuple[str, int]]  # reader's error, rows in the unfinished table
    report: dict[str, Any]


@pytest.fixture(scope="module")
def first_ingest(tmp_path_factory: pytest.TempPathFactory) -> FirstIngest:
    """Shared by the tests below: its completed collection is also the one the update
    test starts from, which saves a process (several seconds of model loading)."""
    folder = tmp_path_factory.mktemp("crash")
    catalog = write_jsonl(folder / "catalog.jsonl", [product(n) for n in range(ROWS)])
    home = folder / "ws"
    kills, after_kills = [], []
    for rows in (FIRST_KILL_ROWS, SECOND_KILL_ROWS):
        kills.append(kill_once_committed(catalog, home, rows))
        with pytest.raises(MMSearchError) as caught:
            Searcher(settings(home), NAME)
        (build_id,) = collection(home).unfinished_builds()
        after_kills.append((str(caught.value), len(latest_index_rows(home, build_id))))
    return FirstIngest(catalog, home, kills, after_kills, ingest(catalog, home))


def test_a_killed_first_ingest_publishes_nothing(first_ingest: FirstIngest) -> None:
    for record, (error, written) in zip(first_ingest.kills, first_ingest.after_kills, strict=True):
        assert "did not finish" in error and "resume" in error
        # Every committed chunk is in the table, none of it visible: nothing is live.
        assert written >= record["rows_done"]
    first, second = first_ingest.after_kills
    assert FIRST_KILL_ROWS <= first[1] < second[1] < ROWS
    assert first_ingest.kills[0]["run_id"] == first_ingest.kills[1]["run_id"]


def test_the_same_command_resumes_without_losing_or_re_encoding_rows(
    first_ingest: FirstIngest,
) -> None:
    report = first_ingest.report
    counts = report["counts"]
    _error, written = first_ingest.after_kills[-1]

    assert report["resumed"] and report["committed"]
    assert report["run_id"] == first_ingest.kills[0]["run_id"]
    assert counts["resumed"] == written  # rows the killed runs committed: not encoded again
    assert counts["added"] == ROWS and counts["failed"] == 0
    state = live(first_ingest.home)
    assert sorted(state.ids) == sorted(f"p{n}" for n in range(ROWS))  # none lost, none twice
    assert state.table_version == state.latest_version
    assert leftovers(first_ingest.home) == ([], [], [])


def test_a_killed_update_leaves_live_as_it_was_and_resumes(
    first_ingest: FirstIngest, tmp_path: Path
) -> None:
    home = tmp_path / "ws"
    shutil.copytree(first_ingest.home, home)
    before = live(home)
    rows = [
        product(n, "renewed" if n % 2 == 0 or n >= ROWS else "")
        for n in range(UPDATE_START, ROWS + UPDATE_START)
    ]
    catalog = write_jsonl(tmp_path / "update.jsonl", rows)
    changing = sum(1 for n in range(UPDATE_START, ROWS + UPDATE_START) if n % 2 == 0 or n >= ROWS)

    record = kill_once_committed(catalog, home, UPDATE_KILL_ROWS)

    after = live(home)
    assert record["rows_done"] >= UPDATE_KILL_ROWS
    assert (after.build_id, after.table_version) == (before.build_id, before.table_version)
    assert after.hashes == before.hashes and len(after.ids) == ROWS
    assert after.latest_version > after.table_version  # the killed run did write
    hits = keyword_hits(home, "renewed lamp")
    assert hits and all(before.titles[i] == title for i, title in hits.items())
    written = sum(
        1 for i, h in latest_index_rows(home, before.build_id).items() if before.hashes.get(i) != h
    )
    assert written > 0

    report = ingest(catalog, home)

    counts = report["counts"]
    assert report["resumed"] and report["run_id"] == record["run_id"]
    assert counts["resumed"] == written
    assert counts["added"] + counts["updated"] == changing
    assert counts["unchanged"] == ROWS - changing
    final = live(home)
    expected = {**before.titles, **{row["id"]: row["title"] for row in rows}}
    assert len(final.ids) == len(set(final.ids)) == len(expected)
    assert final.titles == expected
    assert final.build_id == before.build_id
    assert final.table_version == final.latest_version
    assert leftovers(home) == ([], [], [])
