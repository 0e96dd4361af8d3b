"""The query-embedding LRU cache, alone and inside Searcher._encode."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.retrieval.query_cache import QueryEmbeddingCache, image_key, text_key
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher

from conftest import COLOURS, FAKES


def vector(value: float) -> np.ndarray:
    return np.full(4, value, dtype=np.float32)


def test_lru_evicts_the_least_recently_used_and_counts_hits_and_misses():
    cache = QueryEmbeddingCache(2)
    a, b, c = (text_key("enc", "v1", t) for t in "abc")
    cache.put(a, vector(1))
    cache.put(b, vector(2))
    assert cache.get(a) is not None  # a is now the most recent
    cache.put(c, vector(3))  # evicts b
    assert cache.get(b) is None
    assert cache.get(c)[0] == 3.0
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.size, stats.capacity) == (2, 1, 2, 2)


def test_cached_vectors_are_read_only_copies():
    cache = QueryEmbeddingCache(4)
    original = vector(1)
    cache.put(text_key("enc", "v1", "q"), original)
    original[:] = 9.0
    cached = cache.get(text_key("enc", "v1", "q"))
    assert cached[0] == 1.0
    with pytest.raises(ValueError):
        cached[0] = 5.0


def test_keys_separate_encoder_versions_and_image_content():
    assert text_key("enc", "v1", "q") != text_key("enc", "v2", "q")
    red = Image.new("RGB", (8, 8), (255, 0, 0))
    assert image_key("enc", "v1", red) == image_key("enc", "v1", red.copy())
    assert image_key("enc", "v1", red) != image_key("enc", "v1", Image.new("RGB", (8, 8), "blue"))
    assert image_key("enc", "v1", red) != image_key("enc", "v1", red.resize((4, 4)))


def test_capacity_zero_stores_nothing():
    cache = QueryEmbeddingCache(0)
    cache.put(text_key("enc", "v1", "q"), vector(1))
    assert cache.get(text_key("enc", "v1", "q")) is None and cache.stats().size == 0


@pytest.fixture
def searcher_and_cache(settings, make_catalog):
    Ingestor(settings).run(IngestOptions(make_catalog(), "shop"))
    cache = QueryEmbeddingCache(16)
    return Searcher(settings, "shop", query_cache=cache), cache


def test_searcher_encodes_a_repeated_text_query_once(searcher_and_cache):
    searcher, cache = searcher_and_cache
    first = searcher.search(SearchRequest(text="blue mug", k=3))
    calls = FAKES["text"].calls
    second = searcher.search(SearchRequest(text="blue mug", k=3))
    assert FAKES["text"].calls == calls  # answered from the cache
    assert [h.id for h in second.hits] == [h.id for h in first.hits]
    searcher.search(SearchRequest(text="red mug", k=3))
    assert FAKES["text"].calls == calls + 1
    assert (cache.stats().hits, cache.stats().misses) == (1, 2)


def test_searcher_caches_image_queries_by_pixels(searcher_and_cache):
    searcher, cache = searcher_and_cache
    query = Image.new("RGB", (16, 16), COLOURS["green"])
    searcher.search(SearchRequest(image=query, k=2))
    calls = FAKES["image"].calls
    result = searcher.search(SearchRequest(image=query.copy(), k=2))
    assert FAKES["image"].calls == calls and result.hits[0].id == "item-1"
    assert cache.stats().hits == 1


def test_two_searchers_can_share_one_cache(settings, searcher_and_cache):
    searcher, cache = searcher_and_cache
    searcher.search(SearchRequest(text="green", k=1))
    other = Searcher(settings, "shop", query_cache=cache)
    other.search(SearchRequest(text="green", k=1))
    assert cache.stats().hits == 1
