"""Pseudo-relevance feedback (RM3) for the keyword retriever."""

from __future__ import annotations

import pytest

from mmsearch.filters.expr import Compare
from mmsearch.index.base import Match
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.retrieval.expansion import (
    FeedbackSettings,
    expanded_query,
    expansion_terms,
    interpolate,
)
from mmsearch.retrieval.retrieve import RetrievalQuery
from mmsearch.search.searcher import Searcher

from conftest import write_jsonl


def test_expansion_words_come_from_the_heaviest_hits_and_skip_the_query() -> None:
    feedback = [("nacelle drag of the nacelle", 3.0), ("nacelle wash", 1.0), ("unrelated", 0.0)]
    terms = expansion_terms("propeller drag", feedback, 2)
    assert [word for word, _ in terms] == ["nacelle", "wash"]
    assert terms[0][1] > terms[1][1] > 0
    assert expanded_query("propeller drag", terms) == "propeller drag nacelle wash"
    assert expansion_terms("x", [("a b", 0.0)], 3) == []


def test_interpolation_keeps_the_original_top_and_adds_new_items() -> None:
    original = [Match("a", 10.0, 1), Match("b", 5.0, 2)]
    expanded = [Match("c", 8.0, 3), Match("b", 4.0, 2)]
    mixed = interpolate(original, expanded, 0.7, depth=3)
    assert [m.id for m in mixed] == ["a", "b", "c"]
    assert mixed[0].score == pytest.approx(0.7)
    assert mixed[1].score == pytest.approx(0.7 * 0.5 + 0.3 * 0.5)
    assert mixed[2].row_id == 3
    assert [m.id for m in interpolate(original, expanded, 0.0, depth=1)] == ["c"]


def test_feedback_search_finds_a_synonym_document_and_keeps_the_filter(settings, tmp_path):
    rows: list[dict[str, object] | str] = [
        {"id": "d1", "title": "propeller slipstream", "text": "slipstream nacelle", "shelf": "a"},
        {"id": "d2", "title": "slipstream study", "text": "nacelle wake", "shelf": "a"},
        {"id": "d3", "title": "nacelle wake", "text": "measured nacelle wake", "shelf": "a"},
        {"id": "d4", "title": "nacelle wake", "text": "another nacelle wake", "shelf": "b"},
        {"id": "d5", "title": "boundary layer", "text": "laminar flow", "shelf": "a"},
    ]
    Ingestor(settings).run(IngestOptions(write_jsonl(tmp_path / "c.jsonl", rows), "wings"))
    retriever = Searcher(settings, "wings").retriever
    plain = retriever.retrieve(RetrievalQuery("slipstream", None, depth=10, signals=["keyword"]))
    assert {m.id for m in plain.ranked["keyword"]} == {"d1", "d2"}
    settings_fb = FeedbackSettings(docs=2, terms=2, original_weight=0.6)
    expanded = retriever.retrieve(
        RetrievalQuery("slipstream", None, depth=10, signals=["keyword"], feedback=settings_fb)
    )
    found = [m.id for m in expanded.ranked["keyword"]]
    assert found[:2] == ["d1", "d2"] or found[:2] == ["d2", "d1"]
    assert {"d3", "d4"} <= set(found) and "d5" not in found
    shelf_a = Compare("shelf", "=", "a")
    filtered = retriever.retrieve(
        RetrievalQuery(
            "slipstream", None, depth=10, signals=["keyword"], feedback=settings_fb, where=shelf_a
        )
    )
    assert "d4" not in {m.id for m in filtered.ranked["keyword"]}
    assert "d3" in {m.id for m in filtered.ranked["keyword"]}


def test_the_feedback_list_is_kept_apart_and_leaves_the_fused_lists_alone(settings, tmp_path):
    rows: list[dict[str, object] | str] = [
        {"id": "d1", "title": "propeller slipstream", "text": "slipstream nacelle"},
        {"id": "d2", "title": "slipstream study", "text": "nacelle wake"},
        {"id": "d3", "title": "nacelle wake", "text": "measured nacelle wake"},
        {"id": "d5", "title": "boundary layer", "text": "laminar flow"},
    ]
    Ingestor(settings).run(IngestOptions(write_jsonl(tmp_path / "c.jsonl", rows), "wings"))
    retriever = Searcher(settings, "wings").retriever
    fb = FeedbackSettings(docs=2, terms=2, original_weight=0.6)
    plain = retriever.retrieve(RetrievalQuery("slipstream", None, depth=10))
    both = retriever.retrieve(RetrievalQuery("slipstream", None, depth=10, feedback_list=fb))
    expanded = retriever.retrieve(RetrievalQuery("slipstream", None, depth=10, feedback=fb))
    assert plain.feedback is None
    assert [m.id for m in both.ranked["keyword"]] == [m.id for m in plain.ranked["keyword"]]
    assert both.feedback is not None and both.feedback == expanded.ranked["keyword"]
    assert "d3" in {m.id for m in both.feedback} - {m.id for m in plain.ranked["keyword"]}
    kept = retriever.retrieve(
        RetrievalQuery("slipstream", None, depth=10, feedback=fb, feedback_list=fb)
    )
    assert kept.feedback == kept.ranked["keyword"] == expanded.ranked["keyword"]
    none = retriever.retrieve(RetrievalQuery("zeppelin", None, depth=10, feedback_list=fb))
    assert none.feedback == []
