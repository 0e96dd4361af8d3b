"""Milvus filtered vector search at scale: every mode, and the filtered modes at several
``MMSEARCH_MILVUS_EXACT_FILTER_ROWS`` limits, on one ingest; or two source trees of
mmsearch compared on the same collection, alternating.

The catalog and its cached MiniLM vectors are ``benchmarks/store_compare.py``'s (run its
``--encode-only`` first); the ingest uses the lookup encoder over them, so only the store
is timed. Filters are ``category = '<c>' AND year >= <y>``, varying per query (a few
items to 60% of the catalog). Recall@10 of the filtered vector retriever is against
exact NumPy search under the same filter.

Usage::

    python benchmarks/milvus_filtered.py --items 100000 --store milvus --budget 30
    python benchmarks/milvus_filtered.py --items 100000 --store lancedb --budget 30
    # the same collection searched by two source trees, alternately (before/after):
    git archive <rev> src | tar -x -C /tmp/before
    python benchmarks/milvus_filtered.py --items 20000 --compare /tmp/before/src src
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import store_compare as sc  # the catalog, the cached vectors, the Milvus Lite launcher

CACHE = Path("/tmp/mmsearch-store-compare")
PLAIN_MODES: dict[str, list[str] | None] = {
    "keyword": ["keyword"],
    "vector": ["text_vector"],
    "hybrid": None,
}
FILTERED_MODES: dict[str, list[str] | None] = {
    "filtered vector": ["text_vector"],
    "filtered hybrid": None,
}


def measure(
    searcher: Any,
    cache: Any,
    mode: str,
    signals: list[str] | None,
    filtered: bool,
    budget_s: float,
    limit: int = 200,
) -> dict[str, Any]:
    """p50/p95 of one mode, stopped at ``limit`` queries or ``budget_s`` (at least 10)."""
    from mmsearch.search.request import SearchRequest

    categories = sorted(set(cache.categories))
    labels = np.array(cache.categories)

    def request(i: int) -> SearchRequest:
        where = sc.where_for(i, categories)[0] if filtered else None
        text = cache.queries[i % len(cache.queries)]
        return SearchRequest(text=text, k=10, signals=signals, where=where)

    for i in range(3):  # warm-up
        searcher.search(request(i))
    latencies: list[float] = []
    recalls: list[float] = []
    started = time.perf_counter()
    for i in range(limit):
        if i >= 10 and time.perf_counter() - started > budget_s:
            break
        tick = time.perf_counter()
        result = searcher.search(request(i))
        latencies.append((time.perf_counter() - tick) * 1000)
        if signals == ["text_vector"]:
            _, category, year = sc.where_for(i, categories)
            mask = (labels == category) & (cache.years >= year) if filtered else None
            truth = sc.exact_top(cache, i % len(cache.queries), 10, mask)
            if truth:
                recalls.append(len({h.id for h in result.hits} & set(truth)) / len(truth))
    return {
        "mode": mode,
        "queries": len(latencies),
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(float(np.percentile(latencies, 95)), 1),
        "recall_at_10": round(statistics.fmean(recalls), 3) if recalls else None,
        "load": round(os.getloadavg()[0], 1),
    }


def settings_for(home: Path, uri: str | None, **extra: Any) -> Any:
    from mmsearch.config import Settings

    options: dict[str, Any] = {"home": home, "text_encoder": sc.CACHED_FAMILY}
    options["query_cache_size"] = 0
    if uri:
        options |= {"backend": "milvus", "milvus_uri": uri}
    return Settings(**options, **extra)


def ingest(cache: Any, items: int, uri: str | None, work: Path) -> Path:
    from mmsearch.ingest import IngestOptions, Ingestor
    from mmsearch.search.request import SearchRequest
    from mmsearch.search.searcher import Searcher

    home = Path(tempfile.mkdtemp(prefix="filtered-", dir=work))
    sc.register_cached(cache)
    tick = time.perf_counter()
    Ingestor(settings_for(home, uri)).run(IngestOptions(sc.build_catalog(CACHE, items), "bench"))
    print(f"ingest {items:,} items: {time.perf_counter() - tick:.0f} s", flush=True)
    if uri:
        searcher = Searcher(settings_for(home, uri), "bench")
        settled = sc.settle(lambda i: searcher.search(SearchRequest(text=cache.queries[i], k=10)))
        print(f"searches settled {settled:.0f} s after the ingest", flush=True)
    return home


def sweep(args: argparse.Namespace, cache: Any, uri: str | None, work: Path) -> None:
    from mmsearch.search.searcher import Searcher

    home = ingest(cache, args.items, uri, work)
    searcher = Searcher(settings_for(home, uri), "bench")
    for mode, signals in PLAIN_MODES.items():
        print(json.dumps(measure(searcher, cache, mode, signals, False, args.budget)), flush=True)
    for limit in args.exact_rows if uri else [None]:
        extra = {"milvus_exact_filter_rows": limit} if limit is not None else {}
        limited = Searcher(settings_for(home, uri, **extra), "bench")
        for mode, signals in FILTERED_MODES.items():
            figures = measure(limited, cache, mode, signals, True, args.budget)
            print(json.dumps({**figures, "exact_filter_rows": limit}), flush=True)


def compare(args: argparse.Namespace, cache: Any, uri: str, work: Path) -> None:
    """Each source tree searches the same collection in its own process, alternately."""
    home = ingest(cache, args.items, uri, work)
    for _ in range(args.rounds):
        for src in args.compare:
            env = dict(os.environ, PYTHONPATH=str(Path(src).resolve()))
            command = [sys.executable, __file__, "--items", str(args.items), "--budget"]
            command += [str(args.budget), "--search-only", uri, str(home), "--label", src]
            subprocess.run(command, env=env, check=True)


def search_only(args: argparse.Namespace, cache: Any) -> None:
    import mmsearch
    from mmsearch.search.searcher import Searcher

    uri, home = args.search_only
    sc.register_cached(cache)
    searcher = Searcher(settings_for(Path(home), uri), "bench")
    for mode, signals in FILTERED_MODES.items():
        figures = measure(searcher, cache, mode, signals, True, args.budget, limit=40)
        print(json.dumps({"source": args.label, **figures, "mmsearch": mmsearch.__file__}))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--store", choices=["milvus", "lancedb"], default="milvus")
    parser.add_argument("--budget", type=float, default=30.0, help="seconds per mode")
    parser.add_argument("--exact-rows", type=int, nargs="+", default=[4096, 1024, 0])
    parser.add_argument("--compare", nargs="+", metavar="SRC", help="source trees to alternate")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--search-only", nargs=2, metavar=("URI", "HOME"), help=argparse.SUPPRESS)
    parser.add_argument("--label", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cache = sc.encode_or_load(CACHE, args.items, 400)
    if args.search_only:
        search_only(args, cache)
        return
    work = Path(tempfile.mkdtemp(prefix="milvus-filtered-"))
    if args.store == "lancedb" and not args.compare:
        sweep(args, cache, None, work)
        return
    with sc.milvus_server(work) as uri:
        if args.compare:
            compare(args, cache, uri, work)
        else:
            sweep(args, cache, uri, work)


if __name__ == "__main__":
    main()
