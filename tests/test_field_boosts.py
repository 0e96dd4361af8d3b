"""Keyword field boosts: a title match can outweigh a body match, per collection.

A catalog where one item names "glider" in its title (with a long body) and another
repeats it in a short body: the plain keyword signal puts the body match first, and a
title boost turns the order around. Set through ``mmsearch ranking-settings``, read by
the Searcher with the build; bad names and values are refused naming them.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mmsearch.catalog.mapping import FieldMapping
from mmsearch.cli import app
from mmsearch.errors import QueryError
from mmsearch.index.base import Match
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.retrieval.field_boosts import boosted, check_boosts
from mmsearch.retrieval.retrieve import RetrievalQuery
from mmsearch.search.searcher import Searcher
from mmsearch.workspace import Workspace

from conftest import write_jsonl

FILLER = " ".join(f"word{n}" for n in range(60))


@pytest.fixture
def shop(tmp_path, settings):
    rows: list[dict[str, object] | str] = [
        {"id": "titled", "title": "glider wing", "description": f"{FILLER} about a glider"},
        {"id": "bodied", "title": "spare parts", "description": "glider glider glider kit"},
        {"id": "other", "title": "engine", "description": "piston engine parts"},
    ]
    catalog = write_jsonl(tmp_path / "shop.jsonl", rows)
    Ingestor(settings).run(IngestOptions(catalog, "shop"))
    return settings


def state_json(settings) -> dict:
    folder = Workspace(settings.home).collection("shop").folder
    return json.loads((folder / "collection.json").read_text())


def keyword_order(settings, boosts=None) -> list[str]:
    searcher = Searcher(settings, "shop")
    retrieved = searcher.retriever.retrieve(
        RetrievalQuery(text="glider", image=None, depth=10, field_boosts=boosts)
    )
    return [m.id for m in retrieved.ranked["keyword"]]


def test_a_title_boost_puts_the_title_match_first(shop):
    assert keyword_order(shop, {}) == ["bodied", "titled"]
    assert keyword_order(shop, {"title": 4.0}) == ["titled", "bodied"]
    # Boosting the body instead keeps the body match first.
    assert keyword_order(shop, {"description": 3.0})[0] == "bodied"


def test_the_collection_setting_is_used_by_searches_that_name_none(shop):
    runner = CliRunner()
    home = str(shop.home)
    result = runner.invoke(
        app, ["ranking-settings", "-c", "shop", "--field-boost", "title=4", "--home", home]
    )
    assert result.exit_code == 0, result.output
    saved = json.loads(
        (Workspace(shop.home).collection("shop").folder / "collection.json").read_text()
    )
    assert saved["ranking"]["field_boosts"] == {"title": 4.0}
    assert keyword_order(shop) == ["titled", "bodied"]
    assert keyword_order(shop, {}) == ["bodied", "titled"]  # a request may turn them off
    result = runner.invoke(
        app, ["ranking-settings", "-c", "shop", "--no-field-boosts", "--home", home]
    )
    assert result.exit_code == 0, result.output
    assert keyword_order(shop) == ["bodied", "titled"]


@pytest.mark.parametrize(
    ("value", "named"),
    [("colour=2", "colour"), ("title=0", "title=0"), ("title", "'title'"), ("title=x", "title=x")],
)
def test_bad_boosts_are_refused_naming_them(shop, value, named):
    result = CliRunner().invoke(
        app, ["ranking-settings", "-c", "shop", "--field-boost", value, "--home", str(shop.home)]
    )
    assert result.exit_code != 0
    assert named in result.output
    assert "ranking" not in state_json(shop)


def test_boosts_of_one_leave_the_keyword_scores_as_they_were():
    matches = [Match("a", 2.2, 7), Match("b", 2.0, 8)]
    rows = {"a": {"title": "x", "texts_json": "{}"}, "b": {"title": "glider", "texts_json": "{}"}}
    assert boosted("glider", matches, rows, {"title": 1.0}) == matches
    lifted = boosted("glider", matches, rows, {"title": 3.0})
    assert [m.id for m in lifted] == ["b", "a"] and lifted[1].score == 2.2
    assert lifted[0].row_id == 8  # the store's row handle travels with the match


def test_check_boosts_takes_the_mapping_title_field_name():
    mapping = FieldMapping(title="name", text=["blurb"])
    assert check_boosts({"name": 2, "blurb": 0.5}, mapping, "shop") == {"title": 2.0, "blurb": 0.5}
    with pytest.raises(QueryError, match=r"'colour'.*name, blurb"):
        check_boosts({"colour": 2}, mapping, "shop")
