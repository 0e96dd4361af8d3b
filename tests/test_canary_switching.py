"""Canaries, rollback guards and switches under load: every search answered by exactly
one build, sticky callers, and a failing canary switched off by itself."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from mmsearch.builds import lifecycle
from mmsearch.builds.canary import CanaryGuards
from mmsearch.builds.publishing import set_default_gate
from mmsearch.cli import app as cli_app
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.service.app import create_app
from mmsearch.workspace import Workspace
from service_support import running_server

from conftest import BrokenTextEncoder, save_image, write_jsonl

CLIENTS = 16
MAX_REQUESTS_PER_CLIENT = 150
RUN_SECONDS = 20.0


def catalog(folder: Path, prefix: str) -> Path:
    rows = []
    for index, (colour, rgb) in enumerate(
        {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}.items()
    ):
        save_image(folder / "img" / f"{colour}.png", rgb)
        rows.append(
            {
                "id": f"{prefix}-{index}",
                "title": f"{colour} mug",
                "description": f"a {colour} mug for tea",
                "category": "kitchen",
                "image": f"img/{colour}.png",
            }
        )
    return write_jsonl(folder / "catalog.jsonl", rows)


@pytest.fixture
def two_builds(settings, tmp_path):
    """Build A live, build B previous: their item ids start with "a-" and "b-"."""
    Ingestor(settings).run(IngestOptions(catalog(tmp_path / "a", "a"), "shop"))
    folder = Workspace(settings.home).collection("shop")
    build_a = folder.alias("live")
    Ingestor(settings).run(IngestOptions(catalog(tmp_path / "b", "b"), "shop", new_build=True))
    build_b = folder.alias("live")
    lifecycle.rollback(folder, "test")
    assert folder.alias("live") == build_a and folder.alias("previous") == build_b
    return settings, folder, build_a, build_b


def test_canary_share_is_within_two_points_and_callers_are_sticky(two_builds):
    _settings, folder, build_a, build_b = two_builds
    lifecycle.start_canary(folder, build_b, 10, "test")
    state = folder.state()
    routes = [lifecycle.route("shop", state, f"user-{n}") for n in range(2000)]
    share = sum(r.canary for r in routes) / len(routes) * 100
    assert 8.0 <= share <= 12.0
    again = [lifecycle.route("shop", state, f"user-{n}") for n in range(2000)]
    assert again == routes  # 100% sticky
    assert {r.build_id for r in routes if r.canary} == {build_b}
    assert {r.build_id for r in routes if not r.canary} == {build_a}
    random.seed(7)
    unkeyed = sum(lifecycle.route("shop", state, None).canary for _ in range(2000)) / 20
    assert 8.0 <= unkeyed <= 12.0


def test_switches_under_sixteen_clients_fail_nothing_and_never_mix_builds(two_builds):
    settings, folder, build_a, build_b = two_builds
    prefixes = {build_a: "a-", build_b: "b-"}
    results: list[tuple[int, str | None, list[str]]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int, base: str) -> None:
        with httpx.Client(base_url=base, timeout=30) as http:
            for i in range(MAX_REQUESTS_PER_CLIENT):
                if stop.is_set():
                    return
                body = {"text": "blue mug", "k": 3, "session": f"s-{n}-{i % 4}"}
                try:
                    response = http.post("/v1/collections/shop/search", json=body)
                    data = response.json() if response.status_code == 200 else {}
                    row = (response.status_code, data.get("build_id"), data.get("hits", []))
                except httpx.HTTPError as exc:
                    row = (0, repr(exc), [])
                with lock:
                    results.append((row[0], row[1], [h["id"] for h in row[2]]))

    unlimited = settings.model_copy(update={"rate_limit_per_minute": 0})
    with running_server(create_app(unlimited)) as base:
        threads = [threading.Thread(target=client, args=(n, base)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + RUN_SECONDS
        steps = [
            lambda: lifecycle.start_canary(folder, build_b, 50, "test"),
            lambda: lifecycle.stop_canary(folder, "test"),
            lambda: lifecycle.start_canary(folder, build_b, 25, "test"),
            lambda: lifecycle.publish(folder, build_b, "test", action="promote"),
            lambda: lifecycle.rollback(folder, "test"),
            lambda: lifecycle.publish(folder, build_b, "test"),
            lambda: lifecycle.rollback(folder, "test"),
        ]
        for step in steps:
            time.sleep(0.3)
            step()
        time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join(timeout=max(1.0, deadline - time.monotonic()))
    assert results and all(not t.is_alive() for t in threads)
    failed = [r for r in results if r[0] != 200]
    assert failed == []
    for _status, build, ids in results:
        assert ids, "every search finds the blue mug"
        assert all(i.startswith(prefixes[build]) for i in ids), (build, ids)
    served = Counter(build for _s, build, _i in results)
    assert served[build_a] > 0 and served[build_b] > 0
    assert folder.alias("live") == build_a


def test_a_canary_whose_text_encoder_fails_is_switched_off_by_its_guard(settings, tmp_path):
    Ingestor(settings).run(IngestOptions(catalog(tmp_path / "a", "a"), "shop"))
    folder = Workspace(settings.home).collection("shop")
    live = folder.alias("live")
    broken = settings.model_copy(update={"text_encoder": "broken-text"})
    Ingestor(broken).run(IngestOptions(catalog(tmp_path / "b", "b"), "shop", new_build=True))
    canary = folder.alias("live")
    lifecycle.rollback(folder, "test")
    CanaryGuards(min_searches=20).store(folder)
    lifecycle.start_canary(folder, canary, 50, "test")
    BrokenTextEncoder.fail = True
    try:
        unlimited = settings.model_copy(update={"rate_limit_per_minute": 0})
        with TestClient(create_app(unlimited)) as client:
            answered = Counter()
            for n in range(200):
                body = {"text": "blue mug", "session": f"user-{n}"}
                response = client.post("/v1/collections/shop/search", json=body)
                assert response.status_code == 200  # a failing encoder degrades, never fails
                answered[response.json()["routed"]] += 1
            metrics = client.get("/metrics").text
            status = client.get("/v1/collections/shop/canary").json()
    finally:
        BrokenTextEncoder.fail = False
    assert folder.alias("live") == live and lifecycle.canary_of(folder.state()) is None
    assert 20 <= answered["canary"] < 60  # stopped soon after the guard could judge
    stops = [e for e in lifecycle.switch_history(folder) if e["action"] == "canary_stop"]
    assert stops[-1]["automatic"] and stops[-1]["reason"].startswith("encoder_failures")
    assert 'mmsearch_canary_auto_stops_total{collection="shop",guard="encoder_failures"} 1.0' in (
        metrics
    )
    assert status["canary"] is None and status["switches"][-1]["action"] == "canary_stop"


def test_canary_and_rollback_over_the_api(two_builds):
    settings, folder, build_a, build_b = two_builds
    with TestClient(create_app(settings)) as client:
        bad = client.put("/v1/collections/shop/canary", json={"build_id": "build-x", "percent": 5})
        assert bad.status_code == 409 and "no build" in bad.json()["error"]["message"]
        zero = client.put("/v1/collections/shop/canary", json={"build_id": build_b, "percent": 0})
        assert zero.status_code == 422
        live_too = client.put(
            "/v1/collections/shop/canary", json={"build_id": build_a, "percent": 5}
        )
        assert live_too.status_code == 409
        started = client.put(
            "/v1/collections/shop/canary", json={"build_id": build_b, "percent": 100}
        )
        assert started.status_code == 200 and started.json()["after"]["canary"] == build_b
        searched = client.post("/v1/collections/shop/search", json={"text": "mug"}).json()
        assert searched["build_id"] == build_b and searched["routed"] == "canary"
        guards = client.put("/v1/collections/shop/canary/guards", json={"max_p95_ratio": 1.5})
        assert guards.status_code == 200
        assert client.get("/v1/collections/shop/canary").json()["guards"]["max_p95_ratio"] == 1.5
        assert client.delete("/v1/collections/shop/canary").json()["action"] == "canary_stop"
        searched = client.post("/v1/collections/shop/search", json={"text": "mug"}).json()
        assert searched["build_id"] == build_a and searched["routed"] == "live"
        rolled = client.post("/v1/collections/shop/rollback")
        assert rolled.status_code == 200 and folder.alias("live") == build_b
        searched = client.post("/v1/collections/shop/search", json={"text": "mug"}).json()
        assert searched["build_id"] == build_b
    log = (settings.home / "logs" / "queries.jsonl").read_text().splitlines()
    routed = [json.loads(line)["routed"] for line in log]
    assert routed == ["canary", "live", "live"]


def test_cli_canary_guards_stop_and_rollback(two_builds):
    settings, folder, build_a, build_b = two_builds
    home = ["--home", str(settings.home)]
    runner = CliRunner()
    started = runner.invoke(cli_app, ["canary", "-c", "shop", build_b, "--percent", "5", *home])
    assert started.exit_code == 0, started.output
    assert lifecycle.canary_of(folder.state()).percent == 5.0
    no_share = runner.invoke(cli_app, ["canary", "-c", "shop", build_b, *home])
    assert no_share.exit_code == 2 and "--percent" in no_share.output
    guards = runner.invoke(
        cli_app, ["canary", "-c", "shop", "guards", "--set", "min_searches=50", *home]
    )
    assert guards.exit_code == 0 and '"min_searches": 50' in guards.output
    wrong = runner.invoke(cli_app, ["canary", "-c", "shop", "guards", "--set", "nope=1", *home])
    assert wrong.exit_code == 2 and "min_searches" in wrong.output
    stopped = runner.invoke(cli_app, ["canary", "-c", "shop", "stop", *home])
    assert stopped.exit_code == 0 and lifecycle.canary_of(folder.state()) is None
    rolled = runner.invoke(cli_app, ["rollback", "-c", "shop", "--reason", "bad", *home])
    assert rolled.exit_code == 0, rolled.output
    assert folder.alias("live") == build_b and folder.alias("previous") == build_a
    events = lifecycle.switch_history(folder)
    assert events[-1]["action"] == "rollback" and events[-1]["reason"] == "bad"
    assert events[-1]["actor"].startswith("cli")


def test_canary_status_compares_builds_from_the_query_and_click_logs(two_builds):
    settings, folder, build_a, build_b = two_builds
    lifecycle.start_canary(folder, build_b, 50, "test")
    with TestClient(create_app(settings.model_copy(update={"rate_limit_per_minute": 0}))) as client:
        answers = [
            client.post(
                "/v1/collections/shop/search", json={"text": "blue mug", "session": f"u{n}"}
            ).json()
            for n in range(40)
        ]
        canary_answers = [a for a in answers if a["routed"] == "canary"]
        for answer in canary_answers[:5]:
            click = {"query_id": answer["query_id"], "item_id": answer["hits"][0]["id"]}
            assert client.post("/v1/feedback", json=click).status_code == 201
        api = client.get("/v1/collections/shop/canary").json()
    cli = CliRunner().invoke(
        cli_app, ["canary", "-c", "shop", "status", "--json", "--home", str(settings.home)]
    )
    assert cli.exit_code == 0, cli.output
    report = json.loads(cli.output)
    rows = {row["role"]: row for row in report["builds"]}
    assert rows["canary"]["build_id"] == build_b and rows["live"]["build_id"] == build_a
    assert rows["canary"]["queries"] == len(canary_answers)
    assert rows["live"]["queries"] == 40 - len(canary_answers)
    assert rows["canary"]["clicked_queries"] == 5 and rows["live"]["clicks"] == 0
    assert 0.0 <= report["ctr_p_value"] <= 1.0
    assert api["builds"] == report["builds"]
    assert api["this_worker"][build_b]["clicked_queries"] == 5


def test_builds_publish_and_promote_over_the_api_are_gated(two_builds, tmp_path):
    settings, folder, build_a, build_b = two_builds
    gate = tmp_path / "gate" / "gate.toml"
    gate.parent.mkdir()
    gate.write_text("[counts]\nmin_ratio = 2.0\n")  # B has as many items as A: refused
    set_default_gate(folder, gate, "test")
    with TestClient(create_app(settings)) as client:
        listed = client.get("/v1/collections/shop/builds").json()["builds"]
        assert {b["build_id"]: b["status"] for b in listed} == {
            build_a: "live",
            build_b: "previous",
        }
        refused = client.post(f"/v1/collections/shop/builds/{build_b}/publish")
        assert refused.status_code == 409, refused.text
        assert "failed its gate" in refused.text and "ratio" in refused.text
        assert folder.alias("live") == build_a
        shown = client.get(f"/v1/collections/shop/builds/{build_b}").json()
        assert shown["status"] == "previous" and shown["gate_report"]["verdict"] == "fail"
        no_reason = client.post(
            f"/v1/collections/shop/builds/{build_b}/publish", json={"force": True}
        )
        assert no_reason.status_code == 400 and "reason" in no_reason.text
        forced = client.post(
            f"/v1/collections/shop/builds/{build_b}/publish",
            json={"force": True, "reason": "hotfix"},
        )
        assert forced.status_code == 200 and forced.json()["forced"] is True
        assert folder.alias("live") == build_b
        assert folder.manifest(build_b).publishes[-1].reason == "hotfix"
        assert client.post("/v1/collections/shop/rollback", json={"reason": "x"}).status_code == 200
        no_canary = client.post("/v1/collections/shop/promote")
        assert no_canary.status_code == 409
        lifecycle.start_canary(folder, build_b, 10, "test")
        assert client.post("/v1/collections/shop/promote").status_code == 409  # still gated
        gate.write_text("[counts]\nmin_ratio = 0.5\n")
        set_default_gate(folder, gate, "test")
        promoted = client.post("/v1/collections/shop/promote")
        assert promoted.status_code == 200, promoted.text
        assert promoted.json()["event"]["action"] == "promote"
    assert folder.alias("live") == build_b and lifecycle.canary_of(folder.state()) is None
    audit = (settings.home / "audit").glob("*.jsonl")
    lines = [json.loads(x) for f in audit for x in f.read_text().splitlines()]
    actions = [(e["action"], e["outcome"]) for e in lines]
    assert ("build.publish", "refused") in actions and ("build.promote", "ok") in actions
