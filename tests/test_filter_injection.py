"""Filters cannot be used to inject SQL, through the real HTTP API.

The corpus of the original report, then a published payload list (PayloadsAllTheThings,
tests/data/sqli_payloads.txt) sent three ways: as the whole ``where``, appended to a
valid ``where``, and as a structured filter value. Every answer must be a 400 whose
message reveals nothing about the store (no internal column the caller did not type
themselves, no generated SQL), or a 200 whose hits all satisfy what the caller asked.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mmsearch.filters import all_of, matches, parse_where, structured_filter
from mmsearch.index.open import open_build_index
from mmsearch.manifest import AttributeDescription
from mmsearch.service.app import create_app
from mmsearch.workspace import Workspace
from service_support import ingest_shop

PAYLOADS = Path(__file__).parent / "data" / "sqli_payloads.txt"
ATTRIBUTES = [
    AttributeDescription(field="category", column="category", kind="string"),
    AttributeDescription(field="price", column="price", kind="float"),
    AttributeDescription(field="in_stock", column="in_stock", kind="bool"),
]
KINDS: dict[str, str] = {a.column: a.kind for a in ATTRIBUTES}
# Parts of a message that quote the caller's own text back to them.
ECHOES = [
    re.compile(r"at position \d+ \('(.*)'\): "),
    re.compile(r"\(near '(.*)'\): "),
    re.compile(r"Unknown filter attribute '(.*)'; "),
    re.compile(r"The filter value (.*) does not fit"),
]
GENERATED_SQL = ["SELECT", "FROM", "array_has_any", "`", "prefilter", "lance"]


def load_payloads() -> list[str]:
    lines = PAYLOADS.read_text(encoding="utf-8").split("\n")
    return [line for line in lines if line and not line.startswith("# ")]


@pytest.fixture
def client(settings, make_catalog, tmp_path):
    ingest_shop(settings, make_catalog())
    update: dict = {"allowed_roots": [tmp_path / "cat"]}
    if "rate_limit_per_minute" in type(settings).model_fields:
        update["rate_limit_per_minute"] = 0  # hundreds of requests in a second, on purpose
    settings = settings.model_copy(update=update)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def internal_columns(settings, client) -> list[str]:
    """Every column of the build table that is not a user attribute."""
    folder = Workspace(settings.home).collection("shop")
    manifest = folder.live_manifest()
    names = open_build_index(folder, manifest, settings).schema.names
    assert {"source_file", "search_text", "texts_json", "record_sha256"} <= set(names)
    return [name for name in names if name not in KINDS]


def search(client, **body):
    return client.post("/v1/collections/shop/search", json={"text": "mug", "k": 10, **body})


def check_refusal(response, internal: list[str], typed: str) -> None:
    """A 400 that quotes only what the caller typed and names nothing internal."""
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] in {"FilterError", "QueryError"}, error
    message = error["message"]
    rest = message
    for pattern in ECHOES:
        found = pattern.search(rest)
        if found:
            quoted = found.group(1).strip("'").rstrip("…")
            assert " ".join(quoted.split()) in " ".join(typed.split()) or quoted in repr(typed)
            rest = rest.replace(found.group(1), "")
    for name in internal:
        assert not re.search(rf"\b{re.escape(name)}\b", rest), (name, message)
    for word in GENERATED_SQL:
        assert word not in rest, (word, message)


def check_hits(response, where: str | None, filters: dict) -> int:
    """Every hit satisfies the caller's structured filters (and their where, when valid)."""
    assert response.status_code == 200, response.text
    wanted = all_of(
        structured_filter(filters, ATTRIBUTES), parse_where(where, KINDS) if where else None
    )
    hits = response.json()["hits"]
    for hit in hits:
        assert wanted is None or matches(wanted, hit["attributes"]), (where, filters, hit)
    return len(hits)


def test_the_reported_corpus_is_refused_or_harmless(client, internal_columns):
    escape = search(client, where="1=1) OR (1=1", filters={"price": {"max": 5}})
    if escape.status_code == 200:
        assert {h["id"] for h in escape.json()["hits"]} <= {"item-0"}
    else:
        check_refusal(escape, internal_columns, "1=1) OR (1=1")

    for where in ["source_file LIKE '/%'", "size = 3", "price <", "search_text = 'mug'"]:
        response = search(client, where=where)
        check_refusal(response, internal_columns, where)
        message = response.json()["error"]["message"]
        assert "category, in_stock, price" in message or where == "price <", message
    size = search(client, where="size = 3").json()["error"]["message"]
    for name in ("search_text", "texts_json", "record_sha256", "vector_text"):
        assert name not in size

    injected = search(client, filters={"category": "x' OR '1'='1"})
    assert check_hits(injected, None, {"category": "x' OR '1'='1"}) == 0


def test_valid_filters_still_filter(client):
    cheap = search(client, where="price < 7 AND in_stock", filters={"category": "kitchen"})
    assert {h["id"] for h in cheap.json()["hits"]} == {"item-0"}
    quoted = search(client, where="category = 'office' OR category = 'it''s'")
    assert {h["id"] for h in quoted.json()["hits"]} == {"item-1", "item-3"}


def test_published_payloads_are_refused_or_harmless(client, internal_columns):
    payloads = load_payloads()
    assert len(payloads) == 245
    guard = {"price": {"max": 7}}
    outcomes = {"refused": 0, "answered": 0}
    for payload in payloads:
        cases = [
            (payload, guard),
            (f"price < 10 AND {payload}", guard),
            (None, {"category": payload, **guard}),
        ]
        for where, filters in cases:
            body = {"filters": filters} if where is None else {"where": where, "filters": filters}
            response = search(client, **body)
            if response.status_code == 200:
                check_hits(response, where, filters)
                outcomes["answered"] += 1
            else:
                check_refusal(response, internal_columns, where or payload)
                outcomes["refused"] += 1
    assert sum(outcomes.values()) == 3 * len(payloads)
    # Payloads as a where are never valid filters; as a category they are just text.
    assert outcomes["refused"] >= 2 * len(payloads)
    assert outcomes["answered"] >= len(payloads) - 5


def test_the_query_log_keeps_the_callers_filters_not_the_compiled_one(client, settings):
    where = "category = 'kitchen' OR in_stock"
    response = search(client, where=where, filters={"price": {"max": 7}, "category": ["kitchen"]})
    assert response.status_code == 200, response.text
    lines = (settings.home / "logs" / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[-1])
    assert record["query_id"] == response.json()["query_id"]
    assert record["filters"] == where
    assert record["structured_filters"] == {"price": {"max": 7.0}, "category": ["kitchen"]}
    assert "`" not in lines[-1] and "array_has_any" not in lines[-1]
