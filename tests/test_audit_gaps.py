"""Audit gaps: an emptied or removed log must not verify, anchors can be exported and
checked, and anonymous refusals are one line per client address and minute."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from mmsearch.cli import app as cli_app
from mmsearch.config import Settings
from mmsearch.governance.audit import (
    AuditError,
    AuditEvent,
    AuditLog,
    RefusalTally,
    load_anchor,
    record,
)
from mmsearch.service.app import create_app
from mmsearch.service.state import ServiceState

EVENTS = 8


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    for number in range(1, EVENTS + 1):
        record(tmp_path, "item.put", key_id=f"k_{number:010x}", items=[f"SKU-{number}"])
    return AuditLog(tmp_path)


def kinds(log: AuditLog, anchor: dict | None = None) -> set[str]:
    report = log.verify(anchor)
    assert report.ok is (not report.problems)
    return {p.kind for p in report.problems}


def test_every_append_writes_a_private_anchor_beside_the_keys(log: AuditLog, tmp_path: Path):
    anchor = json.loads(log.anchor_path.read_text())
    head = json.loads(log.head_path.read_text())
    assert log.anchor_path == tmp_path / "auth" / "audit-anchor.json"
    assert (
        (anchor["seq"], anchor["sha256"])
        == (head["seq"], head["sha256"])
        == (
            EVENTS,
            head["sha256"],
        )
    )
    assert stat.S_IMODE(log.anchor_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.anchor_path.parent.stat().st_mode) == 0o700
    assert log.verify().ok


def test_an_emptied_log_without_its_head_fails(log: AuditLog):
    log.path.write_bytes(b"")
    log.head_path.unlink()
    report = log.verify()
    assert not report.ok and report.events == 0
    assert [(p.line, p.kind) for p in report.problems] == [(1, "truncated")]
    assert f"records {EVENTS} events; the log has no events" in report.problems[0].detail


def test_a_removed_audit_folder_fails(log: AuditLog):
    shutil.rmtree(log.folder)
    report = log.verify()
    assert not report.ok and kinds(log) == {"truncated"}


def test_a_removed_anchor_is_reported_while_the_log_has_events(log: AuditLog):
    log.anchor_path.unlink()
    assert kinds(log) == {"anchor"}


def test_an_append_after_emptying_continues_from_the_anchor(log: AuditLog, tmp_path: Path):
    """Otherwise the next event would start a fresh chain and the anchor would follow it."""
    log.path.write_bytes(b"")
    log.head_path.unlink()
    record(tmp_path, "keys.create", key_id="cli:test")
    events = log.read(limit=10)
    assert [e["seq"] for e in events] == [EVENTS + 1]
    report = log.verify()
    assert not report.ok and "deleted" in {p.kind for p in report.problems}
    assert f"seq 1-{EVENTS} missing" in report.problems[0].detail


def test_an_exported_anchor_catches_a_rewritten_workspace(log: AuditLog, tmp_path: Path):
    exported = tmp_path / "elsewhere" / "anchor.json"
    exported.parent.mkdir()
    written = log.export_anchor(exported)
    anchor = load_anchor(exported)
    assert (anchor["seq"], anchor["sha256"]) == (written["seq"], written["sha256"])
    assert stat.S_IMODE(exported.stat().st_mode) == 0o600
    assert log.verify(anchor).ok

    # Whoever can write the workspace removes the log and its local anchor, then builds a
    # fresh chain of as many events: the workspace alone verifies, the export does not.
    shutil.rmtree(log.folder)
    log.anchor_path.unlink()
    for number in range(EVENTS):
        record(tmp_path, "item.put", key_id="k_forged", items=[f"X-{number}"])
    assert log.verify().ok
    problems = log.verify(anchor).problems
    assert [(p.line, p.kind) for p in problems] == [(EVENTS, "edited")]
    assert "exported anchor" in problems[0].detail

    shorter = log.path.read_bytes().splitlines()[:3]
    log.path.write_bytes(b"".join(line + b"\n" for line in shorter))
    assert "truncated" in kinds(log, anchor)


def test_an_anchor_of_a_damaged_log_is_refused(log: AuditLog, tmp_path: Path):
    log.head_path.unlink()
    with pytest.raises(AuditError, match="does not verify"):
        log.export_anchor(tmp_path / "anchor.json")
    (tmp_path / "junk.json").write_text('{"seq": "x"}')
    with pytest.raises(AuditError, match="not an audit anchor"):
        load_anchor(tmp_path / "junk.json")
    with pytest.raises(AuditError, match="does not exist"):
        load_anchor(tmp_path / "missing.json")


def test_cli_anchor_and_verify_with_anchor(log: AuditLog, tmp_path: Path):
    runner = CliRunner()
    home = str(tmp_path)
    target = tmp_path / "kept" / "anchor.json"
    target.parent.mkdir()
    exported = runner.invoke(cli_app, ["audit", "anchor", str(target), "--home", home])
    assert exported.exit_code == 0, exported.output
    assert f"seq {EVENTS}" in exported.output
    ok = runner.invoke(cli_app, ["audit", "verify", "--anchor", str(target), "--home", home])
    assert ok.exit_code == 0, ok.output

    shutil.rmtree(log.folder)
    log.anchor_path.unlink()
    record(tmp_path, "item.put", key_id="k_forged")
    assert runner.invoke(cli_app, ["audit", "verify", "--home", home]).exit_code == 0
    damaged = runner.invoke(
        cli_app, ["audit", "verify", "--anchor", str(target), "--home", home, "--json"]
    )
    assert damaged.exit_code == 1
    assert json.loads(damaged.stdout)["problems"][0]["kind"] == "truncated"
    missing = runner.invoke(
        cli_app, ["audit", "verify", "--anchor", str(tmp_path / "nope"), "--home", home]
    )
    assert missing.exit_code == 2
    help_text = runner.invoke(cli_app, ["audit", "verify", "--help"]).output
    assert "--anchor" in help_text


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_100_anonymous_refusals_in_a_minute_are_one_line_with_their_count(tmp_path: Path):
    log = AuditLog(tmp_path)
    clock = FakeClock(1_800_000_000.0)  # the start of a minute
    tally = RefusalTally(log.append, clock=clock, timer=False)
    for number in range(100):
        clock.now += 0.5
        tally.refused("ip:203.0.113.9", f"GET /v1/x{number} -> 401 Unauthorized", 401)
    tally.refused("ip:198.51.100.1", "GET /v1/y -> 401 Unauthorized", 401)
    assert log.read() == [] and tally.pending() == 101

    clock.now += 60  # the next minute's first refusal writes the previous minute's lines
    tally.refused("ip:203.0.113.9", "POST /v1/session -> 401 login failed", 401)
    events = log.read()
    by_client = {e["detail"].split(" from ")[1].split(" in ")[0]: e for e in events}
    assert set(by_client) == {"ip:203.0.113.9", "ip:198.51.100.1"}
    line = by_client["ip:203.0.113.9"]
    assert line["counts"] == {"refusals": 100, "status_401": 100}
    assert (line["key_id"], line["action"], line["outcome"]) == (
        "anonymous",
        "request.refused",
        "refused",
    )
    assert "first: GET /v1/x0" in line["detail"] and "last: GET /v1/x99" in line["detail"]
    assert by_client["ip:198.51.100.1"]["counts"]["refusals"] == 1

    tally.close()  # the pending count of the current minute is not lost
    assert [e["counts"]["refusals"] for e in log.read()] == [100, 1, 1]
    assert log.verify().ok


def test_the_timer_writes_a_finished_minute_when_nobody_refuses(tmp_path: Path):
    log = AuditLog(tmp_path)
    clock = FakeClock()
    tally = RefusalTally(log.append, window_s=0.2, clock=clock)
    tally.refused("ip:203.0.113.9", "GET / -> 401 Unauthorized", 401)
    clock.now += 1.0
    tally.flush_due()  # what the timer calls
    assert [e["counts"]["refusals"] for e in log.read()] == [1]
    tally.close()


def test_the_service_audits_known_keys_singly_and_anonymous_by_address(tmp_path: Path):
    settings = Settings(home=tmp_path / "ws", auth="on", allowed_hosts=["testserver"])
    state = ServiceState(settings)
    state.audit_refusal("k_0123456789", "GET", "/v1/admin/keys", 403, "Forbidden")
    state.audit_refusal("k_0123456789", "GET", "/v1/admin/keys", 403, "Forbidden")
    for _ in range(5):
        state.audit_refusal("anonymous", "GET", "/v1/x", 401, "Unauthorized", "ip:1.2.3.4")
    assert [e["key_id"] for e in state.audit_log.read()] == ["k_0123456789"] * 2
    state.close()
    last = state.audit_log.read()[-1]
    assert last["key_id"] == "anonymous" and last["counts"]["refusals"] == 5
    assert "ip:1.2.3.4" in last["detail"]


def test_anonymous_401s_over_http_become_one_line_at_shutdown(tmp_path: Path):
    settings = Settings(home=tmp_path / "ws", auth="on", allowed_hosts=["testserver"])
    with TestClient(create_app(settings)) as client:
        statuses = {client.get("/v1/collections").status_code for _ in range(30)}
        assert statuses <= {401, 429} and 401 in statuses
        assert AuditLog(settings.home).read() == []
    events = AuditLog(settings.home).read()
    assert len(events) == 1
    assert events[0]["counts"]["refusals"] == 30
    assert "ip:testclient" in events[0]["detail"]


def test_an_invalid_event_is_logged_not_raised(tmp_path: Path):
    state = ServiceState(Settings(home=tmp_path / "ws"))
    state.audit("mms_k_secret", "x")  # a secret as key id is refused, and only logged
    assert state.audit_log.read() == []
    with pytest.raises(AuditError):
        AuditEvent(key_id="mms_k_secret", action="x")
    state.close()
