"""Prometheus metrics of one service instance, plus a short in-process history for charts.

Every app gets its own ``CollectorRegistry`` so that two apps in one process (tests,
embedding the service in another program) never share or double-register series.
Stage latencies come straight from ``SearchResult.timings_ms``, so whatever stages
the searcher reports (encode, each retriever, fusion, rerank, fetch) become labels
without this module knowing them in advance.

Several worker processes (``mmsearch serve --workers N``) answer one port, and a scrape
reaches one of them: each would report only its own share. So ``serve`` starts workers
with ``PROMETHEUS_MULTIPROC_DIR`` naming a fresh private folder, prometheus_client then
keeps every value in a memory-mapped file there, and ``/metrics`` adds up all workers'
files (``MultiProcessCollector``). Counters and histograms of a worker that stopped
still count (totals never go back); its live gauges are dropped when it stops, or at
the next scrape when it died without stopping. Values read at scrape time from one
process's memory (the query cache's counters) are mirrored into counters as they
change, so they too add up across workers. With one worker nothing of this applies.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from mmsearch.processes import pid_alive
from mmsearch.retrieval.query_cache import QueryEmbeddingCache

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HISTORY_SECONDS = 3600
# prometheus_client's own switch: set, every metric value lives in a file in that folder.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> Path | None:
    """The folder workers share their metric values in; None with a single process."""
    value = os.environ.get(MULTIPROC_ENV, "")
    return Path(value) if value else None


def mark_dead_workers(folder: Path) -> list[int]:
    """Drop the live gauges of workers that died without stopping (killed, crashed):
    uvicorn replaces such a worker, and its last values must not be summed forever."""
    dead: list[int] = []
    for path in folder.glob("gauge_live*_*.db"):
        pid_text = path.stem.rpartition("_")[2]
        if pid_text.isdigit() and int(pid_text) not in dead and not pid_alive(int(pid_text)):
            dead.append(int(pid_text))
    for pid in dead:
        mark_process_dead(pid, str(folder))
    return dead


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


class _CacheCollector(Collector):
    """The query cache's counters, read at scrape time (one process)."""

    def __init__(self, cache: QueryEmbeddingCache):
        self.cache = cache

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        stats = self.cache.stats()
        hits = CounterMetricFamily("mmsearch_query_cache_hits", CACHE_HITS_HELP)
        hits.add_metric([], stats.hits)
        misses = CounterMetricFamily("mmsearch_query_cache_misses", CACHE_MISSES_HELP)
        misses.add_metric([], stats.misses)
        size = GaugeMetricFamily("mmsearch_query_cache_entries", CACHE_ENTRIES_HELP)
        size.add_metric([], stats.size)
        yield from (hits, misses, size)


class _SharedCache:
    """The query cache's counters in multiprocess mode: each worker adds what its own
    cache counted since the last look, so the scrape's sum covers every worker."""

    def __init__(self, cache: QueryEmbeddingCache, registry: CollectorRegistry):
        self.cache = cache
        self.hits = Counter("mmsearch_query_cache_hits", CACHE_HITS_HELP, registry=registry)
        self.misses = Counter("mmsearch_query_cache_misses", CACHE_MISSES_HELP, registry=registry)
        self.entries = Gauge(
            "mmsearch_query_cache_entries",
            CACHE_ENTRIES_HELP + " (summed over running workers)",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._seen_hits = 0
        self._seen_misses = 0
        self._lock = threading.Lock()

    def sync(self) -> None:
        stats = self.cache.stats()
        with self._lock:
            if stats.hits > self._seen_hits:
                self.hits.inc(stats.hits - self._seen_hits)
            if stats.misses > self._seen_misses:
                self.misses.inc(stats.misses - self._seen_misses)
            self._seen_hits, self._seen_misses = stats.hits, stats.misses
            self.entries.set(stats.size)


CACHE_HITS_HELP = "Query embeddings answered from the cache"
CACHE_MISSES_HELP = "Query embeddings that had to be computed"
CACHE_ENTRIES_HELP = "Entries in the query cache"


class _StateCollector(Collector):
    """Values read at scrape time from the workspace: collection sizes and live builds
    (the same for every worker, so read once per scrape, never summed)."""

    def __init__(self, collections: Callable[[], list[CollectionInfo]]):
        self.collections = collections

    def collect(self) -> Iterator[GaugeMetricFamily]:
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
        yield from (items, builds)


class ServiceMetrics:
    """The series one service instance exports at ``/metrics``; with ``shared_dir`` (the
    workers' ``PROMETHEUS_MULTIPROC_DIR``, by default from the environment) the series of
    every worker, added up."""

    def __init__(
        self,
        cache: QueryEmbeddingCache,
        collections: Callable[[], list[CollectionInfo]],
        shared_dir: Path | None = None,
    ):
        self.shared_dir = shared_dir if shared_dir is not None else multiprocess_dir()
        self.registry = CollectorRegistry()
        self._state = _StateCollector(collections)
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
        # Embedding drift (monitoring/drift.py), set whenever a check runs in this service;
        # with several workers the most recent check wins, whichever worker ran it.
        self.drift_score = Gauge(
            "mmsearch_drift_score",
            "Unbiased MMD² of the last drift check (candidate build or recent queries vs live)",
            ["collection", "role", "kind"],
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.drift_p_value = Gauge(
            "mmsearch_drift_p_value",
            "Permutation p-value of the last drift check (below the threshold = drift)",
            ["collection", "role", "kind"],
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self._shared_cache: _SharedCache | None = None
        if self.shared_dir is None:
            self.registry.register(_CacheCollector(cache))
        else:
            self._shared_cache = _SharedCache(cache, self.registry)
        self.registry.register(self._state)

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
        if self._shared_cache is not None:
            self._shared_cache.sync()

    def exposition(self) -> bytes:
        """The text a scrape gets: this process's registry, or every worker's values."""
        if self.shared_dir is None or self._shared_cache is None:
            return generate_latest(self.registry)
        self._shared_cache.sync()
        mark_dead_workers(self.shared_dir)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.shared_dir))
        registry.register(self._state)
        return generate_latest(registry)

    def close(self) -> None:
        """A stopping worker's live gauges leave the sums (its counters stay in them)."""
        if self.shared_dir is not None:
            mark_process_dead(os.getpid(), str(self.shared_dir))
