"""In-process query latency of an existing collection, per search mode.

Queries are sampled from the collection itself (item titles, item images), so the
benchmark needs nothing but the collection and measures the realistic case of
queries that do have answers. The query-embedding cache is turned off, so every
search pays for its encoding as a first-time query would; a few warm-up queries
run first so model loading is not counted as latency.
"""

from __future__ import annotations

import random
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mmsearch.config import Settings
from mmsearch.errors import MMSearchError
from mmsearch.manifest import EncoderDescription
from mmsearch.media.images import ImageLimits, load_image
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher

WARMUP = 3


@dataclass
class Latency:
    """Percentiles in milliseconds over ``count`` queries."""

    count: int
    p50: float
    p95: float
    p99: float
    mean: float

    @classmethod
    def of(cls, samples_ms: list[float]) -> Latency:
        values = np.asarray(samples_ms, dtype=np.float64)
        p50, p95, p99 = np.percentile(values, [50, 95, 99])
        return cls(len(values), float(p50), float(p95), float(p99), float(values.mean()))

    def as_dict(self) -> dict[str, float]:
        return {key: round(float(value), 3) for key, value in vars(self).items()}


def peak_rss_mb() -> float:
    """Peak resident memory of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


@dataclass
class SampledQuery:
    text: str
    image: Image.Image | None


def sample_queries(
    searcher: Searcher, count: int, seed: int, limits: ImageLimits
) -> list[SampledQuery]:
    """Titles and first images of ``count`` random items of the collection."""
    ids = sorted(searcher.index.content_hashes())
    if not ids:
        raise MMSearchError(f"Collection '{searcher.collection}' is empty; ingest something first.")
    chosen = random.Random(seed).choices(ids, k=count)
    rows = {
        row["id"]: row for row in searcher.index.get(sorted(set(chosen)), ["id", "title", "images"])
    }
    images: dict[str, Image.Image | None] = {}
    queries = []
    for item_id in chosen:
        row = rows.get(item_id, {})
        if item_id not in images:
            paths = list(row.get("images") or [])
            images[item_id] = _try_load(paths[0], limits) if paths else None
        title = (row.get("title") or "").strip() or item_id
        queries.append(SampledQuery(title, images[item_id]))
    return queries


def _try_load(path: str, limits: ImageLimits) -> Image.Image | None:
    try:
        return load_image(Path(path), limits)
    except MMSearchError:
        return None


ModeBuilder = Callable[[SampledQuery], SearchRequest | None]


def search_modes(encoders: dict[str, EncoderDescription], k: int) -> dict[str, ModeBuilder]:
    """Request builders per mode the collection supports (a mode skips queries it can't form)."""
    modes: dict[str, ModeBuilder] = {
        "keyword": lambda q: SearchRequest(text=q.text, k=k, signals=["keyword"]),
    }
    if "text" in encoders:
        modes["text_vector"] = lambda q: SearchRequest(text=q.text, k=k, signals=["text_vector"])
        modes["text_hybrid"] = lambda q: SearchRequest(text=q.text, k=k)
    if "image" in encoders:
        modes["image"] = lambda q: SearchRequest(image=q.image, k=k) if q.image else None
        modes["text+image"] = lambda q: (
            SearchRequest(text=q.text, image=q.image, k=k) if q.image else None
        )
    return modes


def measure_latency(
    settings: Settings,
    collection: str,
    *,
    queries: int = 200,
    k: int = 10,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Latency percentiles per mode plus peak memory, for one collection."""
    if "query_cache_size" in Settings.model_fields:
        settings = settings.model_copy(update={"query_cache_size": 0})
    searcher = Searcher(settings, collection)
    limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels)
    sampled = sample_queries(searcher, queries, seed, limits)
    modes = search_modes(searcher.manifest.encoders, k)
    advance = progress or (lambda done: None)
    results: dict[str, Any] = {}
    for mode, build in modes.items():
        requests = [r for r in (build(q) for q in sampled) if r is not None]
        if not requests:
            advance(len(sampled))
            continue
        for request in requests[:WARMUP]:
            searcher.search(request)
        samples = []
        for request in requests:
            tick = time.perf_counter()
            searcher.search(request)
            samples.append((time.perf_counter() - tick) * 1000.0)
            advance(1)
        advance(len(sampled) - len(requests))
        results[mode] = Latency.of(samples).as_dict()
    return {
        "collection": collection,
        "build_id": searcher.build_id,
        "items": searcher.index.row_count(),
        "k": k,
        "modes": results,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
