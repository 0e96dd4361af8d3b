"""One hit shape: the API's search answer and the CLI's ``search --json`` share
``search.response.SearchResponse``, and OpenAPI documents it."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from mmsearch.cli import app as cli_app
from mmsearch.search.response import (
    RESPONSE_TRANSPORT_ONLY,
    TRANSPORT_ONLY,
    SearchHit,
    SearchResponse,
)
from mmsearch.service.app import create_app
from service_support import ingest_shop


@pytest.fixture
def shop(settings, make_catalog):
    ingest_shop(settings, make_catalog())
    return settings


def test_the_api_answer_validates_against_the_model_and_keeps_its_old_fields(shop):
    with TestClient(create_app(shop)) as client:
        response = client.post(
            "/v1/collections/shop/search", json={"text": "blue mug", "k": 3, "explain": True}
        )
    assert response.status_code == 200, response.text
    data = response.json()
    answer = SearchResponse.model_validate(data)
    assert answer.hits[0].id == "item-2" and answer.routed == "live"
    top = data["hits"][0]
    # What the web UI and older clients read stays where it was.
    assert top["image_urls"] == top["images"] and top["images"][0].startswith("/v1/")
    assert top["item_url"] == "/items/shop/item-2"
    assert set(top["extra"]) == {"matched_image", "duplicate", "duplicate_distance", "rules"}
    assert top["explanation"]["fusion"] and set(top["signals"]) == {"keyword", "text_vector"}


def test_openapi_documents_the_search_answer(shop):
    with TestClient(create_app(shop)) as client:
        schema = client.get("/openapi.json").json()
    for path, method in [
        ("/v1/collections/{name}/search", "post"),
        ("/v1/collections/{name}/items/{item_id}/similar", "get"),
    ]:
        ok = schema["paths"][path][method]["responses"]["200"]["content"]["application/json"]
        assert ok["schema"]["$ref"].endswith("/SearchResponse")
    hit = schema["components"]["schemas"]["SearchHit"]["properties"]
    assert set(hit) == set(SearchHit.model_fields)
    assert {"matched_image", "duplicate", "rules", "explanation", "image_urls"} <= set(hit)


def test_the_cli_json_hit_has_the_api_hit_keys_less_the_transport_only_ones(shop):
    with TestClient(create_app(shop)) as client:
        api = client.post("/v1/collections/shop/search", json={"text": "blue", "k": 2}).json()
    found = CliRunner().invoke(
        cli_app,
        ["search", "blue", "-c", "shop", "--home", str(shop.home), "--json", "--k", "2"],
        catch_exceptions=False,
    )
    assert found.exit_code == 0, found.output
    cli = json.loads(found.stdout)
    SearchResponse.model_validate(cli)
    assert set(cli["hits"][0]) == set(api["hits"][0]) - TRANSPORT_ONLY
    assert set(cli) == set(api) - RESPONSE_TRANSPORT_ONLY
    assert [(h["id"], h["rank"]) for h in cli["hits"]] == [
        (h["id"], h["rank"]) for h in api["hits"]
    ]
    # The CLI shows local files: paths, not server links.
    assert not cli["hits"][0]["images"][0].startswith("/v1/")
