"""Metrics, traces, JSON logs with request ids, and the query log of the service."""

from __future__ import annotations

import json
import logging
import time

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from mmsearch.errors import MMSearchError
from mmsearch.monitoring.logs import JsonFormatter
from mmsearch.monitoring.metrics import SearchSample
from mmsearch.monitoring.tracing import SearchTracer, make_exporter
from mmsearch.service.app import create_app
from mmsearch.service.charts import bucket_by_minute, latency_svg, volume_svg
from service_support import ingest_shop

from conftest import BrokenTextEncoder


def samples(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


@pytest.fixture
def shop(settings, make_catalog):
    ingest_shop(settings, make_catalog())
    return settings


def shop_total(found: dict, metric: str) -> float:
    """A per-build series summed over the builds of collection "shop"."""
    return sum(
        value
        for (name, labels), value in found.items()
        if name == metric and dict(labels).get("collection") == "shop"
    )


def test_metrics_count_requests_stages_zero_results_cache_and_collections(shop):
    with TestClient(create_app(shop)) as client:
        for _ in range(2):
            client.post("/v1/collections/shop/search", json={"text": "blue mug"})
        client.post("/v1/collections/shop/search", json={"text": "mug", "where": "price > 100"})
        client.get("/v1/collections/shop/items/item-1")
        client.get("/v1/collections/shop/items/nope")
        found = samples(client)
    route = "/v1/collections/{name}/search"
    assert (
        found[
            (
                "mmsearch_http_requests_total",
                (("method", "POST"), ("route", route), ("status", "200")),
            )
        ]
        == 3
    )
    item_route = "/v1/collections/{name}/items/{item_id}"
    assert (
        found[
            (
                "mmsearch_http_requests_total",
                (("method", "GET"), ("route", item_route), ("status", "404")),
            )
        ]
        == 1
    )
    for stage in ("keyword", "text_vector", "encode_text", "fusion", "total"):
        assert found[("mmsearch_search_stage_seconds_count", (("stage", stage),))] == 3, stage
    assert shop_total(found, "mmsearch_searches_total") == 3
    assert shop_total(found, "mmsearch_search_zero_results_total") == 1
    assert found[("mmsearch_query_cache_hits_total", ())] == 1  # the second "blue mug"
    assert found[("mmsearch_query_cache_misses_total", ())] == 2  # "blue mug", "mug"
    assert found[("mmsearch_collection_items", (("collection", "shop"),))] == 5
    builds = [k for k in found if k[0] == "mmsearch_collection_live_build"]
    assert len(builds) == 1 and dict(builds[0][1])["build_id"].startswith("build-")


def test_a_dropped_signal_counts_as_a_fallback(settings, make_catalog):
    settings = settings.model_copy(update={"text_encoder": "broken-text"})
    ingest_shop(settings, make_catalog())
    with TestClient(create_app(settings)) as client:
        BrokenTextEncoder.fail = True
        response = client.post("/v1/collections/shop/search", json={"text": "blue"}).json()
        assert response["warnings"] and response["hits"][0]["id"] == "item-2"
        assert shop_total(samples(client), "mmsearch_search_fallbacks_total") == 1


def test_each_app_has_its_own_registry(shop):
    with TestClient(create_app(shop)) as one, TestClient(create_app(shop)) as two:
        one.post("/v1/collections/shop/search", json={"text": "blue"})
        assert shop_total(samples(one), "mmsearch_searches_total") == 1
        assert shop_total(samples(two), "mmsearch_searches_total") == 0


def test_traces_have_a_search_span_with_one_child_per_stage(shop):
    exporter = InMemorySpanExporter()
    with TestClient(create_app(shop, tracer=SearchTracer(exporter))) as client:
        data = client.post("/v1/collections/shop/search", json={"text": "blue mug"}).json()
    spans = {span.name: span for span in exporter.get_finished_spans()}
    parent = spans["search"]
    assert parent.attributes["mmsearch.query_id"] == data["query_id"]
    assert parent.attributes["mmsearch.collection"] == "shop"
    stages = {name for name in spans if name.startswith("search.")}
    assert stages == {f"search.{stage}" for stage in data["timings_ms"] if stage != "total"}
    for name in stages:
        child = spans[name]
        assert child.parent.span_id == parent.context.span_id
        assert parent.start_time <= child.start_time <= child.end_time <= parent.end_time


def test_tracing_is_off_by_default_and_exporters_are_checked():
    assert make_exporter("off") is None
    assert make_exporter("console") is not None
    with pytest.raises(MMSearchError, match="Unknown tracing exporter"):
        make_exporter("jaeger")
    assert SearchTracer.from_setting("off").enabled is False


def test_request_id_is_echoed_or_generated_and_logged(shop, caplog):
    with TestClient(create_app(shop)) as client, caplog.at_level(logging.INFO, "mmsearch.access"):
        given = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
        assert given.headers["x-request-id"] == "abc-123"
        made = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
        assert len(made.headers["x-request-id"]) == 32
        client.post(
            "/v1/collections/shop/search", json={"text": "red"}, headers={"X-Request-ID": "q-1"}
        )
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records]
    access = [line for line in lines if line["logger"] == "mmsearch.access"]
    first = access[0]
    assert first["request_id"] == "abc-123" and first["status"] == 200
    assert first["route"] == "/healthz" and first["duration_ms"] >= 0
    assert access[-1]["request_id"] == "q-1"
    log = (shop.home / "logs" / "queries.jsonl").read_text().splitlines()
    assert json.loads(log[-1])["request_id"] == "q-1"


def test_query_log_records_each_search_and_rotates(shop):
    small = shop.model_copy(update={"query_log_max_bytes": 1024, "query_log_backups": 2})
    with TestClient(create_app(small)) as client:
        first = client.post("/v1/collections/shop/search", json={"text": "blue mug", "k": 2}).json()
        line = json.loads((shop.home / "logs" / "queries.jsonl").read_text().splitlines()[0])
        assert line["query_id"] == first["query_id"]
        assert line["text"] == "blue mug" and line["has_image"] is False
        assert line["hit_ids"] == [h["id"] for h in first["hits"]]
        assert line["build_id"] == first["build_id"] and line["latency_ms"] > 0
        for n in range(30):
            client.post("/v1/collections/shop/search", json={"text": f"mug {n}", "k": 5})
    logs = sorted(p.name for p in (shop.home / "logs").glob("queries.jsonl*"))
    assert logs == ["queries.jsonl", "queries.jsonl.1", "queries.jsonl.2"]


def test_admin_charts_show_the_last_hour(shop):
    now = time.time()
    history = [SearchSample(now - 30, 0.010, 3, False), SearchSample(now - 20, 0.030, 0, False)]
    history.append(SearchSample(now - 600, 0.020, 1, True))
    buckets = bucket_by_minute(history, now)
    assert len(buckets) == 60 and buckets[-1].count == 2 and buckets[-1].zero == 1
    assert buckets[-1].p50_ms == pytest.approx(10.0) and buckets[-1].p95_ms == pytest.approx(30.0)
    assert buckets[-11].count == 1
    assert volume_svg(buckets).count("<rect") == 2
    assert latency_svg(buckets).count("<circle") == 4
    with TestClient(create_app(shop)) as client:
        client.post("/v1/collections/shop/search", json={"text": "blue"})
        page = client.get("/admin").text
    assert "1 searches" in page and "<rect" in page and "<polyline" in page
