"""The hash-chained audit trail: every kind of tampering found at the right line."""

from __future__ import annotations

import json
import multiprocessing
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mmsearch.governance.audit import (
    GENESIS,
    AuditError,
    AuditEvent,
    AuditLog,
    cli_actor,
    record,
)

EVENTS = 8


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    for number in range(1, EVENTS + 1):
        record(
            tmp_path,
            "item.put",
            key_id=f"k_{number:010x}",
            collection="shop" if number % 2 else "books",
            items=[f"SKU-{number}"],
        )
    return AuditLog(tmp_path)


def lines_of(log: AuditLog) -> list[bytes]:
    return log.path.read_bytes().splitlines()


def write_lines(log: AuditLog, lines: list[bytes]) -> None:
    log.path.write_bytes(b"".join(line + b"\n" for line in lines))


def found(log: AuditLog) -> set[tuple[int, str]]:
    report = log.verify()
    assert report.ok is (not report.problems)
    return {(p.line, p.kind) for p in report.problems}


def test_an_untouched_log_verifies(log: AuditLog):
    report = log.verify()
    assert report.ok and report.problems == []
    assert (report.lines, report.events, report.head_seq) == (EVENTS, EVENTS, EVENTS)
    first, second = (json.loads(line) for line in lines_of(log)[:2])
    assert (first["seq"], first["prev"], second["seq"]) == (1, GENESIS, 2)
    assert second["prev"] != GENESIS and len(second["prev"]) == 64
    assert first["key_id"] == "k_0000000001" and first["action"] == "item.put"
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.folder.stat().st_mode) == 0o700


def test_an_empty_log_verifies(tmp_path: Path):
    report = AuditLog(tmp_path).verify()
    assert report.ok and report.lines == 0


def test_an_edited_field_is_found_at_its_line(log: AuditLog):
    lines = lines_of(log)
    event = json.loads(lines[2])
    event["collection"] = "somewhere-else"
    lines[2] = json.dumps(event, separators=(",", ":")).encode()
    write_lines(log, lines)
    assert found(log) == {(3, "edited")}


def test_an_edited_last_line_is_found_through_the_head(log: AuditLog):
    lines = lines_of(log)
    lines[-1] = lines[-1].replace(b'"outcome":"ok"', b'"outcome":"failed"')
    write_lines(log, lines)
    assert found(log) == {(EVENTS, "edited")}


def test_a_deleted_middle_line_is_found(log: AuditLog):
    lines = lines_of(log)
    del lines[3]  # seq 4
    write_lines(log, lines)
    assert found(log) == {(4, "deleted")}
    assert "seq 4 missing" in log.verify().problems[0].detail


def test_swapped_lines_are_reordered_not_edited(log: AuditLog):
    lines = lines_of(log)
    lines[2], lines[3] = lines[3], lines[2]
    write_lines(log, lines)
    assert found(log) == {(3, "reordered"), (4, "reordered")}


def test_a_deleted_last_line_is_found_through_the_head(log: AuditLog):
    write_lines(log, lines_of(log)[:-1])
    assert found(log) == {(EVENTS, "truncated")}
    write_lines(log, lines_of(log)[:-2])
    problems = log.verify().problems
    assert [(p.line, p.kind) for p in problems] == [(EVENTS - 2, "truncated")]
    assert f"records {EVENTS} events" in problems[0].detail


def test_inserted_garbage_is_malformed(log: AuditLog):
    lines = lines_of(log)
    lines.insert(2, b"this is not an event")
    lines.insert(5, b'{"seq": "x"}')
    write_lines(log, lines)
    assert found(log) == {(3, "malformed"), (6, "malformed")}


def test_a_missing_head_is_reported(log: AuditLog):
    log.head_path.unlink()
    assert found(log) == {(0, "head")}


def test_appends_continue_the_chain_after_reopening(log: AuditLog, tmp_path: Path):
    AuditLog(tmp_path).append(AuditEvent(key_id="cli:test", action="keys.create"))
    report = log.verify()
    assert report.ok and report.events == EVENTS + 1
    assert json.loads(lines_of(log)[-1])["seq"] == EVENTS + 1


def test_events_cap_items_and_never_carry_secrets():
    event = AuditEvent(key_id="k_1", action="item.delete", items=[str(i) for i in range(250)])
    assert len(event.items or []) == 100 and event.item_count == 250
    secret = "mms_k_0123456789_" + "a" * 43
    with pytest.raises(AuditError, match="never its secret"):
        AuditEvent(key_id=secret, action="keys.create")
    redacted = AuditEvent(key_id="k_1", action="x", detail=f"bad {secret} given")
    assert redacted.detail == "bad <secret redacted> given"
    with pytest.raises(AuditError, match="outcome"):
        AuditEvent(key_id="k_1", action="x", outcome="maybe")  # type: ignore[arg-type]
    assert cli_actor().startswith("cli:") and len(cli_actor()) > 4
    assert datetime.fromisoformat(event.time).tzinfo is not None


def test_read_filters_newest_last(log: AuditLog, tmp_path: Path):
    events = log.read(limit=3)
    assert [e["seq"] for e in events] == [6, 7, 8]
    shop = log.read(collection="shop", limit=100)
    assert [e["seq"] for e in shop] == [1, 3, 5, 7]
    assert log.read(since=datetime.now(UTC) + timedelta(minutes=1)) == []
    assert len(log.read(since=datetime.now(UTC) - timedelta(hours=1))) == EVENTS
    assert [e["seq"] for e in log.read(action="item.put", limit=1)] == [8]
    lines = lines_of(log)
    lines.insert(1, b"garbage")
    write_lines(log, lines)
    assert len(log.read(limit=100)) == EVENTS  # bad lines are skipped, not fatal


def _append_many(home: str, worker: int, count: int) -> None:
    for number in range(count):
        record(Path(home), "item.put", key_id=f"k_worker{worker}", items=[f"{worker}-{number}"])


def test_concurrent_appends_from_two_processes_keep_a_valid_chain(tmp_path: Path):
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_append_many, args=(str(tmp_path), worker, 25)) for worker in (1, 2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    log = AuditLog(tmp_path)
    report = log.verify()
    assert report.ok, report.problems
    assert report.events == 50 and report.head_seq == 50
    events = log.read(limit=100)
    assert [e["seq"] for e in events] == list(range(1, 51))
    assert {e["items"][0] for e in events} == {f"{w}-{n}" for w in (1, 2) for n in range(25)}
