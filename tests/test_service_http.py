"""The app behind a real uvicorn server on 127.0.0.1: concurrency, streaming bodies, headers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from mmsearch.service.app import create_app
from service_support import ingest_shop, running_server


@pytest.fixture
def base_url(settings, make_catalog):
    ingest_shop(settings, make_catalog())
    small = settings.model_copy(update={"max_upload_bytes": 64 * 1024})
    with running_server(create_app(small)) as url:
        yield url


def test_concurrent_searches_all_succeed_with_their_own_query_ids(base_url):
    queries = ["blue mug", "red", "green tea", "yellow", "black coffee mug", "office"] * 4

    def run(text: str) -> dict:
        response = httpx.post(
            f"{base_url}/v1/collections/shop/search", json={"text": text, "k": 3}, timeout=30
        )
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(run, queries))
    assert len({r["query_id"] for r in results}) == len(queries)
    blue = [r for r, q in zip(results, queries, strict=True) if q == "blue mug"]
    assert len(blue) == 4 and all(r["hits"][0]["id"] == "item-2" for r in blue)
    metrics = httpx.get(f"{base_url}/metrics").text
    build = results[0]["build_id"]
    assert (
        f'mmsearch_searches_total{{build="{build}",collection="shop"}} {float(len(queries))}'
        in metrics
    )


def test_a_streamed_body_over_the_cap_is_refused_with_413(base_url):
    def chunks():
        yield b'{"text": "mug", "where": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    response = httpx.post(
        f"{base_url}/v1/collections/shop/search",
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "PayloadTooLarge"


def test_request_id_header_and_error_shape_over_http(base_url):
    response = httpx.get(f"{base_url}/v1/collections/nope", headers={"X-Request-ID": "r-42"})
    assert response.status_code == 404 and response.headers["x-request-id"] == "r-42"
    assert response.json()["error"]["type"] == "CollectionNotFound"
    page = httpx.get(f"{base_url}/")
    assert page.status_code == 200 and 'data-collection="shop"' in page.text


def test_serve_refuses_an_unknown_tracing_exporter_before_starting(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    # serve exports these for its worker processes; monkeypatch restores them afterwards
    monkeypatch.setenv("MMSEARCH_HOME", str(tmp_path))
    monkeypatch.setenv("MMSEARCH_TRACING", "off")

    from mmsearch.cli import app

    result = CliRunner().invoke(app, ["serve", "--home", str(tmp_path), "--tracing", "jaeger"])
    assert result.exit_code == 2
    assert "Unknown tracing exporter 'jaeger'" in result.output
