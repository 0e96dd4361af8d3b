"""Codes and aliases: a query naming an item's code finds it first, through every filter."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from mmsearch.catalog.aliases import normalise_aliases, query_keys
from mmsearch.cli import app
from mmsearch.service.app import create_app

from conftest import write_jsonl

runner = CliRunner()
FAKE = ["--text-encoder", "fake-text", "--image-encoder", "fake-image"]
# Many items share the words of the codes, so keyword and vector scores alone do not put
# the coded item first.
ROWS: list[dict[str, object]] = [
    {"id": f"flag-{n}", "title": f"flag eg banner {n} flag", "sku": f"F-{n}"} for n in range(8)
] + [
    {"id": "egypt", "title": "green white black", "short_names": ["flag-eg", "EG"]},
    {"id": "party", "title": "party popper", "short_names": "tada; hooray"},
    {"id": "secret", "title": "closed box", "short_names": ["flag-xx"], "acl": ["staff"]},
    {"id": "mug", "title": "blue mug", "sku": " MUG-1 "},
]


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def home(tmp_path) -> str:
    home = str(tmp_path / "ws")
    catalog = write_jsonl(tmp_path / "codes.jsonl", ROWS)
    ingested = invoke(
        "ingest", str(catalog), "-c", "codes", "--home", home,
        "--alias-field", "short_names", "--alias-field", "sku", *FAKE,
    )  # fmt: skip
    assert ingested.exit_code == 0, ingested.output
    return home


def search(home: str, query: str, *extra: str) -> list[str]:
    found = invoke("search", query, "-c", "codes", "--home", home, "--json", *extra)
    assert found.exit_code == 0, found.output
    return [hit["id"] for hit in json.loads(found.stdout)["hits"]]


def test_values_and_queries_are_normalised():
    assert normalise_aliases([" Flag-EG ", "eg"]) == ["flag-eg", "eg"]
    assert normalise_aliases("tada; Hooray|x,x") == ["tada", "hooray", "x"]
    assert normalise_aliases(None) == [] and normalise_aliases(True) == []
    assert query_keys("  FLAG-eg ") == ["flag-eg"]
    assert query_keys("party :tada: now") == ["party :tada: now", "tada"]


def test_an_item_is_found_first_by_its_code_from_the_cli(home):
    assert search(home, "flag-eg")[0] == "egypt"
    assert search(home, "FLAG-EG ", "--k", "3")[0] == "egypt"
    assert search(home, "hooray")[0] == "party"
    assert search(home, "we :tada: it")[0] == "party"
    assert search(home, "mug-1")[0] == "mug"
    # A part of a code, or a near one, is no alias: ranking is left as it was.
    assert "egypt" not in search(home, "flag-e", "--k", "3")


def test_explain_says_which_alias_matched(home):
    found = invoke("search", "flag-eg", "-c", "codes", "--home", home, "--explain")
    assert found.exit_code == 0, found.output
    assert "alias 'flag-eg' matched exactly" in found.output


def test_an_alias_of_an_item_the_caller_may_not_see_is_never_returned(home):
    assert search(home, "flag-xx")[0] == "secret"  # the operator sees everything
    assert "secret" not in search(home, "flag-xx", "--groups", "")
    assert "secret" not in search(home, "flag-xx", "--groups", "other")
    assert search(home, "flag-xx", "--groups", "staff")[0] == "secret"
    # The caller's where applies too.
    assert "egypt" not in search(home, "flag-eg", "--where", "sku = 'F-1'")


def test_the_api_finds_an_item_by_its_code(home, tmp_path):
    from mmsearch.config import Settings

    settings = Settings(
        home=tmp_path / "ws",
        text_encoder="fake-text",
        image_encoder="fake-image",
        allowed_hosts=["testserver"],
    )
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/v1/collections/codes/search", json={"text": "flag-eg", "k": 3, "explain": True}
        )
    assert response.status_code == 200, response.text
    top = response.json()["hits"][0]
    assert top["id"] == "egypt" and top["explanation"]["alias"] == "flag-eg"


def test_an_unknown_alias_field_is_an_error_listing_the_columns(tmp_path):
    catalog = write_jsonl(tmp_path / "codes.jsonl", ROWS)
    result = invoke(
        "ingest", str(catalog), "-c", "codes", "--home", str(tmp_path / "ws"),
        "--alias-field", "shortname", *FAKE,
    )  # fmt: skip
    assert result.exit_code != 0
    message = " ".join(result.output.split())
    assert "shortname" in message and "--alias-field" in message
    assert "short_names" in message and "sku" in message


def test_a_build_without_aliases_ranks_as_before(tmp_path):
    catalog = write_jsonl(tmp_path / "codes.jsonl", ROWS)
    home = str(tmp_path / "ws")
    assert invoke("ingest", str(catalog), "-c", "codes", "--home", home, *FAKE).exit_code == 0
    found = invoke("search", "flag-eg", "-c", "codes", "--home", home, "--json", "--explain")
    hits = json.loads(found.stdout)["hits"]
    assert hits[0]["id"] != "egypt"
    assert all(hit["explanation"]["alias"] is None for hit in hits)
