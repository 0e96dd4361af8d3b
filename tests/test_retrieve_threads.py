"""The keyword retriever on the shared pool: same answers as one thread, errors still surface."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from mmsearch.errors import QueryError
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.retrieval.retrieve import RetrievalQuery
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher

QUERIES = ["blue mug", "red", "ceramic mug for tea", "green poster", "lamp"]


@pytest.fixture
def searcher(settings, make_catalog) -> Searcher:
    Ingestor(settings).run(IngestOptions(make_catalog(), "shop"))
    return Searcher(settings, "shop")


def _answer(searcher: Searcher, text: str) -> list[tuple[str, float]]:
    return [(hit.id, hit.score) for hit in searcher.search(SearchRequest(text=text, k=5)).hits]


def test_concurrent_hybrid_searches_answer_as_sequential_ones(searcher):
    expected = {text: _answer(searcher, text) for text in QUERIES}
    assert any(expected.values())
    with ThreadPoolExecutor(6) as clients:
        answers = list(clients.map(lambda i: _answer(searcher, QUERIES[i % 5]), range(30)))
    assert answers == [expected[QUERIES[i % 5]] for i in range(30)]


def test_the_retrievers_lists_come_back_in_plan_order_with_timings(searcher):
    retrieved = searcher.retriever.retrieve(RetrievalQuery(text="blue mug", image=None, depth=5))
    assert list(retrieved.ranked) == ["keyword", "text_vector"]
    assert retrieved.ranked["keyword"] and retrieved.ranked["text_vector"]
    assert {"keyword", "text_vector", "encode_text"} <= set(retrieved.timings)


def test_a_keyword_search_that_fails_on_the_pool_fails_the_request(searcher, monkeypatch):
    def refuse(*_args: object) -> None:
        raise QueryError("the keyword index refused the query")

    # The vector search succeeds on the caller's thread; the pool's error still surfaces.
    monkeypatch.setattr(searcher.index, "keyword_search", refuse)
    with pytest.raises(QueryError, match="keyword index refused"):
        searcher.retriever.retrieve(RetrievalQuery(text="blue mug", image=None, depth=5))
