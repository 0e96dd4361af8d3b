"""Prometheus metrics of one service instance, plus a short in-process history for charts.

Every app gets its own ``CollectorRegistry`` so that two apps in one process (tests,
embedding the service in another program) never share or double-register series.
Stage latencies come straight from ``SearchResult.timings_ms``, so whatever stages
the searcher reports (encode, each retriever, fusion, rerank, fetch) become labels
without this module knowing them in advance.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from mmsearch.retrieval.query_cache import QueryEmbeddingCache

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HISTORY_SECONDS = 3600


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    build_id: str
    items: int


@dataclass(frozen=True)
class SearchSample:
    at: float
    seconds: float
    hits: int
    fallback: bool


class SearchHistory:
    """The last hour of searches (time, latency, hit count): what the admin charts draw."""

    def __init__(self, seconds: int = HISTORY_SECONDS, max_samples: int = 100_000):
        self.seconds = seconds
        self._samples: deque[SearchSample] = deque(maxlen=max_samples)
        self._lock = threading.Lock()

    def add(self, sample: SearchSample) -> None:
        with self._lock:
            self._samples.append(sample)
            cutoff = sample.at - self.seconds
            while self._samples and self._samples[0].at < cutoff:
                self._samples.popleft()

    def samples(self) -> list[SearchSample]:
        with self._lock:
            return list(self._samples)


class _StateCollector(Collector):
    """Values read at scrape time: cache counters and collection sizes and builds."""

    def __init__(self, cache: QueryEmbeddingCache, collections: Callable[[], list[CollectionInfo]]):
        self.cache = cache
        self.collections = collections

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        stats = self.cache.stats()
        hits = CounterMetricFamily(
            "mmsearch_query_cache_hits", "Query embeddings answered from the cache"
        )
        hits.add_metric([], stats.hits)
        misses = CounterMetricFamily(
            "mmsearch_query_cache_misses", "Query embeddings that had to be computed"
        )
        misses.add_metric([], stats.misses)
        size = GaugeMetricFamily("mmsearch_query_cache_entries", "Entries in the query cache")
        size.add_metric([], stats.size)
        items = GaugeMetricFamily(
            "mmsearch_collection_items", "Items in the live build", labels=["collection"]
        )
        builds = GaugeMetricFamily(
            "mmsearch_collection_live_build",
            "1 for the build each collection's live alias points at",
            labels=["collection", "build_id"],
        )
        for info in self.collections():
            items.add_metric([info.name], info.items)
            builds.add_metric([info.name, info.build_id], 1)
        yield from (hits, misses, size, items, builds)


class ServiceMetrics:
    """The series one service instance exports at ``/metrics``."""

    def __init__(self, cache: QueryEmbeddingCache, collections: Callable[[], list[CollectionInfo]]):
        self.registry = CollectorRegistry()
        self.history = SearchHistory()
        self.requests = Counter(
            "mmsearch_http_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "mmsearch_http_request_seconds",
            "HTTP request latency by route template",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "mmsearch_search_stage_seconds",
            "Search latency per stage (encode, each retriever, fusion, rerank, fetch, total)",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.searches = Counter(
            "mmsearch_searches",
            "Searches answered, by the build that answered (live or a canary)",
            ["collection", "build"],
            registry=self.registry,
        )
        self.zero_results = Counter(
            "mmsearch_search_zero_results",
            "Searches that found nothing (divide by mmsearch_searches_total for the rate)",
            ["collection", "build"],
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "mmsearch_search_fallbacks",
            "Searches answered with a warning (a signal was dropped)",
            ["collection", "build"],
            registry=self.registry,
        )
        self.build_seconds = Histogram(
            "mmsearch_build_search_seconds",
            "Search latency by the build that answered (compare a canary with live)",
            ["collection", "build"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.clicks = Counter(
            "mmsearch_clicks",
            "Clicks recorded through /v1/feedback, by the build that showed the result",
            ["collection", "build"],
            registry=self.registry,
        )
        self.canary_stops = Counter(
            "mmsearch_canary_auto_stops",
            "Canaries switched off by a rollback guard, by guard",
            ["collection", "guard"],
            registry=self.registry,
        )
        # Embedding drift (monitoring/drift.py), set whenever a check runs in this service.
        self.drift_score = Gauge(
            "mmsearch_drift_score",
            "Unbiased MMD² of the last drift check (candidate build or recent queries vs live)",
            ["collection", "role", "kind"],
            registry=self.registry,
        )
        self.drift_p_value = Gauge(
            "mmsearch_drift_p_value",
            "Permutation p-value of the last drift check (below the threshold = drift)",
            ["collection", "role", "kind"],
            registry=self.registry,
        )
        self.registry.register(_StateCollector(cache, collections))

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.request_seconds.labels(route).observe(seconds)

    def observe_search(
        self,
        collection: str,
        build: str,
        timings_ms: dict[str, float],
        total_seconds: float,
        hits: int,
        warnings: int,
    ) -> None:
        for stage, ms in timings_ms.items():
            self.stage_seconds.labels(stage).observe(ms / 1000.0)
        self.stage_seconds.labels("total").observe(total_seconds)
        self.searches.labels(collection, build).inc()
        self.build_seconds.labels(collection, build).observe(total_seconds)
        if hits == 0:
            self.zero_results.labels(collection, build).inc()
        if warnings:
            self.fallbacks.labels(collection, build).inc()
        self.history.add(SearchSample(time.time(), total_seconds, hits, warnings > 0))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
