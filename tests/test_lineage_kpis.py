"""Lineage (item → source row, run, images, encoders, build; source/run → items) and the
per-build KPIs read from the query and click logs, through the library, CLI and API."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from mmsearch.builds.lineage import (
    LineageError,
    count_from,
    encoder_lineage,
    image_origins,
    item_lineage,
    items_from,
    runs_of,
)
from mmsearch.cli import app as cli_app
from mmsearch.governance.keys import KeyStore
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.manifest import BuildManifest
from mmsearch.monitoring.kpis import (
    BuildKpis,
    KpiError,
    collection_kpis,
    compare_builds,
    ctr_difference_test,
    parse_moment,
    read_kpis,
)
from mmsearch.service.app import create_app
from mmsearch.workspace import Workspace

from conftest import COLOURS, save_image, write_jsonl


def _catalog(folder: Path, name: str, prefix: str, colours: list[str]) -> tuple[Path, list[dict]]:
    rows: list[dict] = []
    for n, colour in enumerate(colours):
        save_image(folder / "img" / f"{colour}.png", COLOURS[colour], size=16 + n)
        rows.append(
            {
                "id": f"{prefix}-{n}",
                "title": f"{colour} {prefix} mug",
                "description": f"a {colour} mug",
                "category": "kitchen",
                "price": 5.0 + n,
                "acl": ["finance"] if n == 1 else None,
                "image": f"img/{colour}.png",
            }
        )
    return write_jsonl(folder / name, rows), rows


def _expected_record_sha256(row: dict, catalog: Path) -> str:
    """Ingest's content hash, recomputed from the catalog row and the image file's bytes."""
    image = (catalog.parent / row["image"]).resolve()
    canonical = {
        "id": row["id"],
        "title": row["title"],
        "texts": {"description": row["description"]},
        "attributes": {"category": row["category"], "price": row["price"]},
        "image_paths": [str(image)],
        "image_sha256": [hashlib.sha256(image.read_bytes()).hexdigest()],
        **({"acl": row["acl"]} if row["acl"] is not None else {}),
    }
    text = json.dumps(canonical, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.fixture
def shop(settings, tmp_path):
    """One build written by two runs: spring.jsonl (run 1), then autumn.jsonl (run 2)."""
    spring, spring_rows = _catalog(tmp_path / "spring", "spring.jsonl", "s", ["red", "green"])
    autumn, autumn_rows = _catalog(
        tmp_path / "autumn", "autumn.jsonl", "a", ["yellow", "black", "blue"]
    )
    first = Ingestor(settings).run(IngestOptions(spring, "shop"))
    second = Ingestor(settings).run(IngestOptions(autumn, "shop"))
    folder = Workspace(settings.home).collection("shop")
    manifest = folder.live_manifest()
    assert first.build_id == second.build_id == manifest.build_id  # the same build
    runs = [r.run_id for r in manifest.runs]
    assert len(runs) == 2 and runs[0] != runs[1]
    return {
        "settings": settings,
        "folder": folder,
        "manifest": manifest,
        "runs": runs,
        "catalogs": {"spring": (spring, spring_rows), "autumn": (autumn, autumn_rows)},
    }


def test_item_lineage_matches_the_catalog_and_the_run(shop):
    settings, folder, manifest = shop["settings"], shop["folder"], shop["manifest"]
    for (catalog, rows), run_id in zip(shop["catalogs"].values(), shop["runs"], strict=True):
        for number, row in enumerate(rows, start=1):
            found = item_lineage(folder, manifest, settings, row["id"])
            source = found["source"]
            assert source["file"] == str(catalog.resolve())
            assert source["row"] == number  # 1-based line of the record in the file
            assert source["record_sha256"] == _expected_record_sha256(row, catalog)
            assert source["file_sha256"] == hashlib.sha256(catalog.read_bytes()).hexdigest()
            assert found["ingest"]["run_id"] == run_id
            assert run_id in runs_of(folder, manifest.build_id)
            assert found["run"]["recorded"] is True
            assert found["run"]["source"]["path"] == str(catalog.resolve())
            assert found["run"]["started_at"] <= found["ingest"]["ingested_at"]
            image = (catalog.parent / row["image"]).resolve()
            assert found["images"] == [
                {
                    "position": 0,
                    "origin": "path",
                    "source": str(image),
                    "sha256": hashlib.sha256(image.read_bytes()).hexdigest(),
                    "phash": found["images"][0]["phash"],
                }
            ]
            assert len(found["images"][0]["phash"]) == 16
            assert found["build"]["build_id"] == folder.alias("live")
            assert found["build"]["table_version"] == manifest.table_version
            assert found["build"]["store"]["backend"] == "lancedb"
            assert found["build"]["mmsearch_version"] == manifest.mmsearch_version
            assert {role: e["version"] for role, e in found["encoders"].items()} == {
                "text": "fake-text-v1",
                "image": "fake-image-v1",
            }


def test_encoder_weights_and_image_origins_from_recorded_strings():
    digest = "ab" * 32
    manifest = BuildManifest.model_validate(
        {
            "build_id": "build-1",
            "table": "build_1",
            "encoders": {
                "text": {
                    "spec": "minilm",
                    "version": f"all-MiniLM-L6-v2@sha256:{digest}",
                    "dim": 384,
                },
                "image": {"spec": "visual", "version": "visual-v1:0123456789ab", "dim": 512},
                "clip": {"spec": "hf:x", "version": "x@sha256:unknown", "dim": 512},
            },
        }
    )
    encoders = encoder_lineage(manifest)
    assert encoders["text"]["weights_sha256"] == digest
    assert encoders["image"]["weights_sha256"] is None  # a parameter digest, not weights
    assert encoders["clip"]["weights_sha256"] is None
    row = {
        "images": ["https://example.com/a.jpg", "/srv/img/b.png"],
        "image_sha256": ["1" * 64, "2" * 64],
        "image_phash": [-1, 5],
    }
    origins = image_origins(row)
    assert [(o["origin"], o["source"], o["sha256"]) for o in origins] == [
        ("url", "https://example.com/a.jpg", "1" * 64),
        ("path", "/srv/img/b.png", "2" * 64),
    ]
    assert [o["phash"] for o in origins] == ["f" * 16, "0000000000000005"]


def test_reverse_lookup_separates_sources_and_runs(shop):
    settings, folder, manifest = shop["settings"], shop["folder"], shop["manifest"]
    spring, _ = shop["catalogs"]["spring"]
    run1, run2 = shop["runs"]

    def ids(**kwargs):
        return [r["id"] for r in items_from(folder, manifest, settings, **kwargs)]

    assert ids(source_file=str(spring.resolve())) == ["s-0", "s-1"]
    assert ids(source_file="autumn.jsonl") == ["a-0", "a-1", "a-2"]  # a bare name
    assert ids(run=run1) == ["s-0", "s-1"]
    assert ids(run=run2) == ["a-0", "a-1", "a-2"]
    assert ids(source_file=str(spring.resolve()), run=run2) == []
    assert ids(source_file="pring.jsonl") == []  # a name matches whole, not as a suffix
    assert ids(run=run2, limit=2) == ["a-0", "a-1"]
    assert count_from(folder, manifest, settings, run=run2) == 3
    rows = items_from(folder, manifest, settings, run=run2)
    assert [r["source_row"] for r in rows] == [1, 2, 3]
    assert all(r["ingest_run"] == run2 for r in rows)
    with pytest.raises(LineageError, match="--source"):
        items_from(folder, manifest, settings)
    with pytest.raises(LineageError, match="not a run id"):
        items_from(folder, manifest, settings, run="../etc")


def test_cli_lineage_and_reverse(shop):
    settings = shop["settings"]
    home = ["--home", str(settings.home)]
    runner = CliRunner()
    shown = runner.invoke(cli_app, ["lineage", "-c", "shop", "a-2", "--json", *home])
    assert shown.exit_code == 0, shown.output
    found = json.loads(shown.stdout)
    assert found["item_id"] == "a-2" and found["source"]["row"] == 3
    assert found["ingest"]["run_id"] == shop["runs"][1]
    table = runner.invoke(cli_app, ["lineage", "-c", "shop", "s-0", *home])
    # A long source path folds at the terminal's width (80 columns here).
    unfolded = "".join(table.stdout.split())
    assert table.exit_code == 0 and "spring.jsonl" in unfolded and "fake-text-v1" in table.stdout
    by_run = runner.invoke(
        cli_app, ["lineage", "-c", "shop", "--run", shop["runs"][0], "--json", *home]
    )
    assert by_run.exit_code == 0, by_run.output
    assert [r["id"] for r in json.loads(by_run.stdout)["items"]] == ["s-0", "s-1"]
    missing = runner.invoke(cli_app, ["lineage", "-c", "shop", "nope", *home])
    assert missing.exit_code == 2 and "No item 'nope'" in missing.output
    both = runner.invoke(cli_app, ["lineage", "-c", "shop", "s-0", "--run", "r", *home])
    assert both.exit_code == 2
    unknown_run = runner.invoke(cli_app, ["lineage", "-c", "shop", "--run", "run-x", *home])
    assert unknown_run.exit_code == 2 and "No ingest run" in unknown_run.output


# --- API access ------------------------------------------------------------------------


@pytest.fixture
def api(shop, tmp_path):
    settings = shop["settings"]
    keys = KeyStore(settings.home)
    secrets = {
        "reader": keys.create("reader", groups=["sales"])[1],
        "finance": keys.create("reader", groups=["finance"])[1],
        "writer": keys.create("writer", groups=["finance"])[1],
        "admin": keys.create("admin")[1],
    }
    settings = settings.model_copy(update={"auth": "on", "rate_limit_per_minute": 0})
    with TestClient(create_app(settings)) as client:
        yield client, {role: {"authorization": f"Bearer {s}"} for role, s in secrets.items()}


def test_api_item_lineage_respects_acl_and_hides_paths(api, shop):
    client, keys = api
    url = "/v1/collections/shop/items/{}/lineage"
    hidden = client.get(url.format("s-1"), headers=keys["reader"])  # acl: finance
    missing = client.get(url.format("no-such"), headers=keys["reader"])
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"]["message"] == "No item 's-1' in collection 'shop'."
    assert client.get(url.format("s-1")).status_code == 401

    seen = client.get(url.format("s-1"), headers=keys["finance"])
    assert seen.status_code == 200, seen.text
    body = seen.json()
    assert body["source"]["file"] == "spring.jsonl" and body["source"]["row"] == 2
    assert body["run"]["source"]["path"] == "spring.jsonl"
    assert body["images"][0]["source"] == "img/green.png"
    assert "path" not in body["build"]["store"]
    assert str(shop["settings"].home) not in seen.text and "/spring/" not in seen.text
    writer = client.get(url.format("s-1"), headers=keys["writer"]).json()
    assert writer["source"]["file"] == "spring.jsonl"  # writers get the reader's view

    full = client.get(url.format("s-1"), headers=keys["admin"])
    spring, _ = shop["catalogs"]["spring"]
    assert full.json()["source"]["file"] == str(spring.resolve())
    assert full.json()["source"]["record_sha256"] == body["source"]["record_sha256"]
    other_build = client.get(url.format("s-0") + "?build=x", headers=keys["finance"])
    assert other_build.status_code == 403


def test_api_reverse_and_kpis_are_admin_only(api, shop):
    client, keys = api
    run2 = shop["runs"][1]
    for path in (f"/v1/collections/shop/lineage?run={run2}", "/v1/collections/shop/kpis"):
        for role in ("reader", "finance", "writer"):
            assert client.get(path, headers=keys[role]).status_code == 403, (path, role)
    reverse = client.get(f"/v1/collections/shop/lineage?run={run2}", headers=keys["admin"])
    assert reverse.status_code == 200, reverse.text
    assert reverse.json()["total"] == 3
    assert [r["id"] for r in reverse.json()["items"]] == ["a-0", "a-1", "a-2"]
    by_name = client.get("/v1/collections/shop/lineage?source=spring.jsonl", headers=keys["admin"])
    assert [r["id"] for r in by_name.json()["items"]] == ["s-0", "s-1"]
    nothing = client.get("/v1/collections/shop/lineage", headers=keys["admin"])
    assert nothing.status_code == 400
    no_run = client.get("/v1/collections/shop/lineage?run=run-nope", headers=keys["admin"])
    assert no_run.status_code == 404

    _write_logs(shop["settings"].home)
    kpis = client.get("/v1/collections/shop/kpis?since=2026-11-30T00:00", headers=keys["admin"])
    assert kpis.status_code == 200, kpis.text
    assert [b["build_id"] for b in kpis.json()["builds"]] == ["build-a", "build-b"]
    assert kpis.json()["builds"][0]["queries"] == 4 and "files" not in kpis.json()
    bad = client.get("/v1/collections/shop/kpis?since=yesterday", headers=keys["admin"])
    assert bad.status_code in (400, 422)


# --- KPIs ------------------------------------------------------------------------------


def _query(qid, build, ts, latency, hits, **extra):
    return {
        "query_id": qid,
        "collection": "shop",
        "build_id": build,
        "text": "mug",
        "has_image": False,
        "filters": None,
        "latency_ms": latency,
        "hit_ids": hits,
        "ts": ts,
        **extra,
    }


def _click(qid, position, at, collection="shop"):
    return {
        "query": "mug",
        "shown": ["x"],
        "clicked": "x",
        "where": None,
        "query_id": qid,
        "position": position,
        "collection": collection,
        "build_id": "ignored: the query's build counts",
        "at": at,
    }


def _write_logs(home: Path) -> None:
    """build-a: 4 queries in the window (+1 before it); build-b: 2, in the rotated file."""
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    day = "2026-11-30T10:00:"
    write_jsonl(
        logs / "queries.jsonl.1",
        [
            _query("q5", "build-b", day + "01+00:00", 5.0, ["a"], routed="canary"),
            _query("q6", "build-b", day + "02+00:00", 15.0, ["a"], routed="canary"),
        ],
    )
    write_jsonl(
        logs / "queries.jsonl",
        [
            _query("q0", "build-a", "2026-11-29T23:59:59+00:00", 999.0, ["x"]),
            _query("q1", "build-a", day + "10+00:00", 10.0, ["x", "y"]),
            _query("q2", "build-a", day + "11+00:00", 20.0, ["x"]),
            _query("q3", "build-a", day + "12+00:00", 30.0, [], fallback=True, encoder_failures=1),
            _query("q4", "build-a", day + "13+00:00", 40.0, ["x"]),
            {**_query("o1", "build-a", day + "14+00:00", 1.0, []), "collection": "other"},
            '{"collection": "shop", "query_id": "broken',
            "",
        ],
    )
    write_jsonl(
        logs / "clicks.jsonl",
        [
            _click("q0", 1, day + "00+00:00"),  # its query is before the window
            _click("q1", 1, day + "20+00:00"),
            # Written out of order (two workers): the first click by time is position 3.
            _click("q2", 1, day + "25+00:00"),  # a later, better one: counts for CTR
            _click("q2", 3, day + "21+00:00"),
            _click("q4", 12, day + "22+00:00"),  # below k=10
            _click("o1", 1, day + "22+00:00", collection="other"),
            _click("zz", 1, day + "22+00:00"),  # a query the log does not have
            {**_click("q4", 1, day + "23+00:00"), "position": "first"},  # malformed
        ],
    )
    write_jsonl(logs / "image_clicks.jsonl", [_click("q6", 2, day + "30+00:00")])


def test_kpis_from_synthetic_logs(tmp_path):
    home = tmp_path / "home"
    _write_logs(home)
    since = datetime(2026, 11, 30, tzinfo=UTC)
    report = read_kpis(home, "shop", since=since)
    a, b = report.builds
    assert a.build_id == "build-a" and b.build_id == "build-b"
    assert (a.queries, a.zero_results, a.fallbacks, a.encoder_failures) == (4, 1, 1, 1)
    assert a.zero_result_rate == 0.25
    assert (a.clicks, a.clicked_queries, a.clicked_top_k) == (4, 3, 2)
    assert a.ctr_at_k == 0.5
    assert math.isclose(a.clicked_mrr, (1 + 1 / 3 + 0 + 1 / 12) / 4)
    assert (a.latency_p50, a.latency_p95, a.latency_p99) == pytest.approx((25.0, 38.5, 39.7))
    assert a.routed == {"live": 4}
    assert (b.queries, b.clicks, b.ctr_at_k, b.clicked_mrr) == (2, 1, 0.5, 0.25)
    assert b.zero_result_rate == 0.0 and b.latency_p50 == 10.0 and b.routed == {"canary": 2}
    assert report.malformed_lines == 2  # the cut query line, the click with a bad position
    assert report.unmatched_clicks == 2  # q0 (outside the window) and zz

    assert read_kpis(home, "shop", since="2026-11-30T00:00:00+00:00") == report
    assert read_kpis(home, "shop", since=since, k=2).builds[0].ctr_at_k == 0.5
    assert read_kpis(home, "shop", since=since, k=12).builds[0].ctr_at_k == 0.75
    everything = collection_kpis(home, "shop")
    assert everything[0].queries == 5 and everything[0].clicks == 5
    until = collection_kpis(home, "shop", until=datetime(2026, 11, 30, 10, 0, 11, tzinfo=UTC))
    assert [(k.build_id, k.queries) for k in until] == [("build-a", 2), ("build-b", 2)]
    assert collection_kpis(home, "other")[0].queries == 1
    assert collection_kpis(home, "nothing") == []


def test_cli_kpis(tmp_path):
    home = tmp_path / "home"
    Workspace(home).create_or_open("shop")
    _write_logs(home)
    runner = CliRunner()
    args = ["kpis", "-c", "shop", "--since", "2026-11-30T00:00", "--home", str(home)]
    shown = runner.invoke(cli_app, [*args, "--json"])
    assert shown.exit_code == 0, shown.output
    builds = json.loads(shown.stdout)["builds"]
    assert [(b["build_id"], b["queries"], b["ctr_at_k"]) for b in builds] == [
        ("build-a", 4, 0.5),
        ("build-b", 2, 0.5),
    ]
    table = runner.invoke(cli_app, args)
    assert table.exit_code == 0 and "build-a" in table.stdout
    zero_row = next(line for line in table.stdout.splitlines() if "zero results" in line)
    assert "25.0%" in zero_row and "0.0%" in zero_row
    assert "2 malformed" in table.stdout
    bad = runner.invoke(cli_app, ["kpis", "-c", "shop", "--since", "soon", "--home", str(home)])
    assert bad.exit_code == 2 and "Cannot read the time" in bad.output


def test_parse_moment():
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    assert parse_moment("24h", now) == datetime(2026, 11, 30, 12, tzinfo=UTC)
    assert parse_moment("2026-11-30T00:00", now) == datetime(2026, 11, 30, tzinfo=UTC)
    for text in ("999999w", "soon", "2026-02-30"):
        with pytest.raises(KpiError):
            parse_moment(text, now)


def _kpis(queries: int, clicked: int) -> BuildKpis:
    return BuildKpis(
        build_id="b",
        queries=queries,
        zero_results=0,
        zero_result_rate=0.0,
        fallbacks=0,
        encoder_failures=0,
        clicks=clicked,
        clicked_queries=clicked,
        clicked_top_k=clicked,
        k=10,
        ctr_at_k=clicked / queries if queries else None,
        clicked_mrr=None,
        latency_p50=None,
        latency_p95=None,
        latency_p99=None,
    )


def test_ctr_difference_test():
    assert ctr_difference_test(_kpis(1000, 100), _kpis(1000, 200)) < 1e-8
    assert ctr_difference_test(_kpis(1000, 100), _kpis(1000, 100)) == pytest.approx(1.0)
    # Hand-computed two-proportion z-test: pooled 0.115, z = 2.1027, two-sided p = 0.0355.
    assert ctr_difference_test(_kpis(1000, 100), _kpis(1000, 130)) == pytest.approx(
        0.0355, abs=5e-4
    )
    small = compare_builds(_kpis(4, 1), _kpis(4, 3))
    assert small["ctr_test"] == "fisher-exact" and small["ctr_p_value"] == pytest.approx(
        0.4857, abs=1e-3
    )
    assert small["ctr_difference"] == 0.5
    assert ctr_difference_test(_kpis(0, 0), _kpis(10, 5)) == 1.0
