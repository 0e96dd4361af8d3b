"""Hybrid search over a real LanceDB build with fake encoders."""

from __future__ import annotations

import pytest
from PIL import Image

from mmsearch.errors import CollectionNotFound, QueryError
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher

from conftest import COLOURS, BrokenTextEncoder

pytestmark = pytest.mark.backends  # every test runs on LanceDB and on Milvus


@pytest.fixture
def searcher(settings, make_catalog) -> Searcher:
    Ingestor(settings).run(IngestOptions(make_catalog(), "shop"))
    return Searcher(settings, "shop")


def test_text_query_fuses_keyword_and_text_vector(searcher):
    result = searcher.search(SearchRequest(text="blue mug", k=3))
    assert result.signals == ["keyword", "text_vector"]
    top = result.hits[0]
    assert top.id == "item-2" and top.title == "blue ceramic mug"
    assert set(top.signals) == {"keyword", "text_vector"}
    assert top.signals["keyword"].rank == 1
    expected = 1 / (60 + top.signals["keyword"].rank) + 1 / (60 + top.signals["text_vector"].rank)
    assert top.score == pytest.approx(expected, abs=1e-6)
    assert [h.score for h in result.hits] == sorted((h.score for h in result.hits), reverse=True)
    assert result.build_id == searcher.build_id
    assert {"keyword", "text_vector", "encode_text", "fusion"} <= set(result.timings_ms)


def test_signals_can_be_narrowed_for_comparisons(searcher):
    only_keyword = searcher.search(SearchRequest(text="blue mug", k=3, signals=["keyword"]))
    assert only_keyword.signals == ["keyword"]
    assert "encode_text" not in only_keyword.timings_ms
    with pytest.raises(QueryError, match="image_vector"):
        searcher.search(SearchRequest(text="blue", signals=["image_vector"]))


def test_image_query_finds_the_same_picture_first(searcher):
    query = Image.new("RGB", (16, 16), COLOURS["yellow"])
    query.putpixel((0, 0), (255, 255, 255))
    result = searcher.search(SearchRequest(image=query, k=5))
    assert result.signals == ["image_vector"]
    assert result.hits[0].id == "item-3"
    assert result.hits[0].signals["image_vector"].score == pytest.approx(1.0, abs=1e-4)


def test_text_and_image_together_use_all_three_signals(searcher):
    query = Image.new("RGB", (16, 16), COLOURS["green"])
    result = searcher.search(SearchRequest(text="green", image=query, k=2))
    assert result.signals == ["image_vector", "keyword", "text_vector"]
    assert result.hits[0].id == "item-1"
    assert set(result.hits[0].signals) == {"image_vector", "keyword", "text_vector"}


def test_filter_is_applied_inside_the_store_query(searcher):
    result = searcher.search(SearchRequest(text="mug", k=10, where="category = 'office'"))
    assert {h.id for h in result.hits} == {"item-1", "item-3"}
    assert all(h.attributes["category"] == "office" for h in result.hits)

    cheap = searcher.search(SearchRequest(text="mug", k=10, where="price < 7 AND in_stock"))
    assert {h.id for h in cheap.hits} == {"item-0", "item-1"}


def test_filter_leaves_k_results_when_enough_items_match(searcher):
    # With post-filtering of a top-1 list this would come back empty.
    result = searcher.search(SearchRequest(text="red", k=1, where="category = 'office'"))
    assert len(result.hits) == 1 and result.hits[0].attributes["category"] == "office"


def test_bad_filter_is_a_query_error(searcher):
    with pytest.raises(QueryError, match="unknown attribute") as raised:
        searcher.search(SearchRequest(text="mug", where="no_such_column = 1"))
    assert "position 1 ('no_such_column')" in str(raised.value)
    assert "category, in_stock, price" in str(raised.value)


@pytest.mark.parametrize(
    ("request_kwargs", "message"),
    [
        ({}, "Give a text query"),
        ({"text": "   "}, "Give a text query"),
        ({"text": "x" * 5000}, "longer than"),
        ({"text": "mug", "k": 0}, "k must be"),
    ],
)
def test_invalid_requests_are_refused(searcher, request_kwargs, message):
    with pytest.raises(QueryError, match=message):
        searcher.search(SearchRequest(**request_kwargs))


def test_unknown_collection_names_what_exists(settings, searcher):
    with pytest.raises(CollectionNotFound, match="collections: shop"):
        Searcher(settings, "nope")


def test_failing_text_model_falls_back_to_keywords_and_says_so(settings, make_catalog):
    broken = settings.model_copy(update={"text_encoder": "broken-text"})
    Ingestor(broken).run(IngestOptions(make_catalog(), "fragile"))
    BrokenTextEncoder.fail = True
    result = Searcher(broken, "fragile").search(SearchRequest(text="yellow", k=3))
    assert result.signals == ["keyword"]
    assert result.hits[0].id == "item-3"
    assert result.warnings == [
        "text_vector skipped (the encoder 'broken-text' failed: model runtime crashed); "
        "results come from keyword only"
    ]


def test_image_query_on_text_only_collection_is_refused(settings, tmp_path):
    from conftest import write_jsonl

    catalog = write_jsonl(tmp_path / "t.jsonl", [{"id": 1, "title": "wing"}])
    Ingestor(settings).run(IngestOptions(catalog, "texts"))
    with pytest.raises(QueryError, match="no image vectors"):
        Searcher(settings, "texts").search(SearchRequest(image=Image.new("RGB", (4, 4))))
