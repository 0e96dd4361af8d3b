"""Query and click logs written by several processes at once (service workers).

Real processes append lines of very different lengths (some far over a write buffer)
to one log that rotates by size while they write; every line must come back whole,
exactly once, from the log and its backups.
"""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

from mmsearch.monitoring.querylog import ClickLog, ClickRecord
from mmsearch.monitoring.shared_append import SharedAppendLog

WRITERS = 4
LINES = 300


def _write_lines(path: str, writer: int, max_bytes: int) -> None:
    log = SharedAppendLog(Path(path), max_bytes=max_bytes, backups=1000)
    for n in range(LINES):
        padding = "x" * ((n * 997) % 20_000)  # up to 20 kB: more than one buffer's worth
        log.write(json.dumps({"writer": writer, "n": n, "pad": padding}))
    log.close()


def _click(path: str, writer: int) -> None:
    clicks = ClickLog(Path(path))
    for n in range(LINES):
        shown = [f"item-{writer}-{n}-{i}-" + "y" * 200 for i in range(60)]  # ~13 kB lines
        clicks.append(ClickRecord(f"q{n}", shown, shown[0], None, f"{writer}-{n}", 1, "c", "b"))


def test_processes_rotating_one_log_keep_every_line_whole_and_once(tmp_path: Path) -> None:
    path = tmp_path / "queries.jsonl"
    max_bytes = 256 * 1024
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_write_lines, args=(str(path), w, max_bytes)) for w in range(WRITERS)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
        assert process.exitcode == 0
    files = [path, *sorted(tmp_path.glob("queries.jsonl.*"))]
    assert len(files) > 5, "the log rotated several times while the writers wrote"
    seen: list[tuple[int, int]] = []
    for file in files:
        for line in file.read_text("utf-8").splitlines():
            entry = json.loads(line)  # a torn or interleaved line fails here
            seen.append((entry["writer"], entry["n"]))
    assert sorted(seen) == [(w, n) for w in range(WRITERS) for n in range(LINES)]
    for file in files[1:]:  # rotated files stop near the limit, not far past it
        assert file.stat().st_size < max_bytes + WRITERS * 25_000


def test_concurrent_click_writers_leave_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "clicks.jsonl"
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_click, args=(str(path), w)) for w in range(WRITERS)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
        assert process.exitcode == 0
    lines = path.read_text("utf-8").splitlines()
    ids = sorted(json.loads(line)["query_id"] for line in lines)
    assert ids == sorted(f"{w}-{n}" for w in range(WRITERS) for n in range(LINES))
