"""``mmsearch keys|audit|rules|rankers`` in-process, and the audit line of ``ingest``."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from mmsearch.cli import app
from mmsearch.governance.audit import AuditLog, cli_actor
from mmsearch.governance.keys import KeyStore
from mmsearch.governance.registry import Registry
from mmsearch.governance.roles import Role
from test_governance_registry import RULES_YAML, save_tiny_ranker

runner = CliRunner()
SECRET = re.compile(r"mms_k_[0-9a-f]{10}_[A-Za-z0-9_-]{43}")


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def audit_events(home: str) -> list[dict]:
    result = invoke("audit", "show", "--home", home, "--json", "--limit", "1000")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_keys_create_prints_a_secret_once_that_authenticates(tmp_path: Path):
    home = str(tmp_path / "ws")
    result = invoke(
        "keys", "create", "--role", "writer", "--collection", "shop", "--collection", "books",
        "--groups", "staff,eu", "--expires", "30d", "--name", "loader", "--home", home,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "will not be shown again" in result.stdout
    secrets = SECRET.findall(result.stdout)
    assert len(secrets) == 1
    key = KeyStore(Path(home)).authenticate(secrets[0])
    assert key is not None and key.role is Role.WRITER
    assert key.collections == ["books", "shop"] and key.groups == ["eu", "staff"]
    assert key.expires_at is not None and key.name == "loader"

    listed = invoke("keys", "list", "--home", home, "--json")
    assert listed.exit_code == 0
    rows = json.loads(listed.stdout)
    assert [(r["key_id"], r["status"]) for r in rows] == [(key.key_id, "active")]
    assert secrets[0] not in listed.stdout and "hash" not in rows[0]
    assert "argon2" not in invoke("keys", "list", "--home", home).stdout

    revoked = invoke("keys", "revoke", key.key_id, "--home", home)
    assert revoked.exit_code == 0 and key.key_id in revoked.stdout
    assert KeyStore(Path(home)).authenticate(secrets[0]) is None
    table = invoke("keys", "list", "--home", home)
    assert key.key_id in table.stdout and "revoked" in table.stdout

    actions = [(e["action"], e["outcome"], e["key_id"]) for e in audit_events(home)]
    assert actions == [("keys.create", "ok", cli_actor()), ("keys.revoke", "ok", cli_actor())]
    assert all(secrets[0] not in json.dumps(e) for e in audit_events(home))


def test_keys_create_json_and_failures(tmp_path: Path):
    home = str(tmp_path / "ws")
    result = invoke("keys", "create", "--role", "admin", "--home", home, "--json")
    data = json.loads(result.stdout)
    assert data["key"]["role"] == "admin" and data["key"]["collections"] is None
    assert KeyStore(Path(home)).authenticate(data["secret"]) is not None

    bad = invoke("keys", "create", "--role", "reader", "--expires", "soon", "--home", home)
    assert bad.exit_code == 2 and "e.g. 30d" in bad.output
    unknown = invoke("keys", "revoke", "k_0000000000", "--home", home)
    assert unknown.exit_code == 2 and "keys list" in unknown.output
    wrong_role = invoke("keys", "create", "--role", "root", "--home", home)
    assert wrong_role.exit_code != 0
    assert len(KeyStore(Path(home)).list()) == 1
    outcomes = [(e["action"], e["outcome"]) for e in audit_events(home)]
    assert outcomes == [("keys.create", "ok"), ("keys.create", "failed"), ("keys.revoke", "failed")]


def test_audit_verify_exits_1_after_tampering(tmp_path: Path):
    home = str(tmp_path / "ws")
    for _ in range(3):
        invoke("keys", "create", "--role", "reader", "--home", home)
    ok = invoke("audit", "verify", "--home", home)
    assert ok.exit_code == 0 and "intact" in ok.stdout and "3 events" in ok.stdout

    log = AuditLog(Path(home))
    lines = log.path.read_bytes().splitlines()
    lines[0] = lines[0].replace(b"keys.create", b"keys.revoke")
    log.path.write_bytes(b"".join(line + b"\n" for line in lines))
    damaged = invoke("audit", "verify", "--home", home)
    assert damaged.exit_code == 1
    assert "line 1" in damaged.output and "edited" in damaged.output
    as_json = invoke("audit", "verify", "--home", home, "--json")
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False
    assert [(p["line"], p["kind"]) for p in report["problems"]] == [(1, "edited")]


def test_audit_show_filters(tmp_path: Path):
    home = str(tmp_path / "ws")
    rules = tmp_path / "promo.yaml"
    rules.write_text(RULES_YAML)
    invoke("keys", "create", "--role", "reader", "--home", home)
    invoke("rules", "add", "promo", str(rules), "--home", home)
    invoke("rules", "default", "promo", "--collection", "shop", "--home", home)
    shop = json.loads(invoke("audit", "show", "-c", "shop", "--json", "--home", home).stdout)
    assert [(e["action"], e["collection"]) for e in shop] == [("rules.default", "shop")]
    last = json.loads(invoke("audit", "show", "--limit", "1", "--json", "--home", home).stdout)
    assert [e["seq"] for e in last] == [3]
    recent = invoke("audit", "show", "--since", "1h", "--json", "--home", home)
    assert len(json.loads(recent.stdout)) == 3
    future = invoke("audit", "show", "--since", "2999-01-01", "--json", "--home", home)
    assert json.loads(future.stdout) == []
    table = invoke("audit", "show", "--home", home)
    assert "rules.default" in table.stdout and "keys.create" in table.stdout
    bad = invoke("audit", "show", "--since", "yesterday", "--home", home)
    assert bad.exit_code == 2 and "2026-01-31" in bad.output


def test_rules_commands(tmp_path: Path):
    home = str(tmp_path / "ws")
    rules = tmp_path / "promo.yaml"
    rules.write_text(RULES_YAML)
    added = invoke("rules", "add", "promo", str(rules), "--home", home)
    assert added.exit_code == 0 and "2024-06-shop-1" in added.stdout
    assert Registry(Path(home)).rules_path("promo").read_text() == RULES_YAML

    assert invoke("rules", "default", "promo", "-c", "shop", "--home", home).exit_code == 0
    assert Registry(Path(home)).default_rules("shop") == "promo"
    listed = json.loads(invoke("rules", "list", "--json", "--home", home).stdout)
    assert [(r["name"], r["default_for"]) for r in listed] == [("promo", ["shop"])]
    assert "promo" in invoke("rules", "list", "--home", home).stdout

    refused = invoke("rules", "remove", "promo", "--home", home)
    assert refused.exit_code == 2 and "--off" in refused.output
    both = invoke("rules", "default", "promo", "--off", "-c", "shop", "--home", home)
    assert both.exit_code == 2 and "not both" in both.output
    off = invoke("rules", "default", "--off", "-c", "shop", "--home", home)
    assert off.exit_code == 0 and Registry(Path(home)).default_rules("shop") is None
    assert invoke("rules", "remove", "promo", "--home", home).exit_code == 0
    assert Registry(Path(home)).rules() == []

    bad = tmp_path / "bad.yaml"
    bad.write_text("version: '1'\nbogus: true\n")
    failed = invoke("rules", "add", "bad", str(bad), "--home", home)
    assert failed.exit_code == 2 and "bogus" in failed.output

    events = audit_events(home)
    assert [(e["action"], e["outcome"]) for e in events] == [
        ("rules.add", "ok"),
        ("rules.default", "ok"),
        ("rules.remove", "failed"),
        ("rules.default", "failed"),
        ("rules.default", "ok"),
        ("rules.remove", "ok"),
        ("rules.add", "failed"),
    ]
    assert events[1]["collection"] == "shop" and "promo" in events[1]["detail"]
    assert "was promo" in events[4]["detail"]


def test_rankers_commands(tmp_path: Path):
    home = str(tmp_path / "ws")
    model = save_tiny_ranker(tmp_path / "model")
    added = invoke("rankers", "add", "ltr", str(model), "--home", home)
    assert added.exit_code == 0, added.output
    assert "3 features" in added.stdout
    assert (Registry(Path(home)).ranker_path("ltr") / "model.txt").is_file()
    listed = json.loads(invoke("rankers", "list", "--json", "--home", home).stdout)
    assert [(r["name"], r["collection"]) for r in listed] == [("ltr", "shop")]
    assert "ltr" in invoke("rankers", "list", "--home", home).stdout
    assert invoke("rankers", "remove", "ltr", "--home", home).exit_code == 0
    missing = invoke("rankers", "remove", "ltr", "--home", home)
    assert missing.exit_code == 2 and "No ranker named 'ltr'" in missing.output
    not_a_model = invoke("rankers", "add", "x", str(tmp_path), "--home", home)
    assert not_a_model.exit_code == 2 and "not a reranker model" in not_a_model.output
    assert [(e["action"], e["outcome"]) for e in audit_events(home)] == [
        ("rankers.add", "ok"),
        ("rankers.remove", "ok"),
        ("rankers.remove", "failed"),
        ("rankers.add", "failed"),
    ]


def test_ingest_appends_an_audit_event(tmp_path: Path, make_catalog):
    home = str(tmp_path / "ws")
    fake = ["--text-encoder", "fake-text", "--image-encoder", "fake-image"]
    done = invoke("ingest", str(make_catalog()), "-c", "shop", "--home", home, "--json", *fake)
    assert done.exit_code == 0, done.output
    missing = invoke("ingest", str(tmp_path / "nope.jsonl"), "-c", "shop", "--home", home, *fake)
    assert missing.exit_code == 2
    events = audit_events(home)
    assert [(e["action"], e["collection"], e["outcome"]) for e in events] == [
        ("ingest", "shop", "ok"),
        ("ingest", "shop", "failed"),
    ]
    assert events[0]["counts"]["added"] == 5 and events[0]["key_id"] == cli_actor()
    assert events[0]["detail"].startswith("build ")
    assert "nope.jsonl" in events[1]["detail"]
    assert invoke("audit", "verify", "--home", home).exit_code == 0
