"""One arm of ``hybrid_latency.py``: a process that answers search requests, one JSON line each.

Why a process per arm: comparing mmsearch before and after a change (or against an
in-process floor) is only fair on a shared host when the arms take turns query by
query in one run, each in a warm process of its own. An arm is either an mmsearch
source tree (``--src``: the current one, or one exported from a git revision) opened
on the benchmark's workspace, or ``--floor``: faiss HNSW + bm25s + RRF over the rows
and vectors that mmsearch stored in the same table, the in-process lower bound.

Protocol: one request per stdin line, ``{"text", "signals", "where", "k", "ann"}``; one answer
per stdout line, ``{"ms", "ids", "stages"}``, ``ms`` measured inside the arm around the
whole search (query encoding included unless ``--no-encode``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

CACHED_FAMILY = "store-compare-cached"  # the encoder spec the benchmark's ingest recorded
DEPTH = 100  # candidates per retriever, as mmsearch's default


class QueryEncoder:
    """The collection's text encoder as the arm sees it: MiniLM, or the cached query vectors.

    The collection was ingested with cached vectors under ``CACHED_FAMILY``; queries are
    encoded by the real MiniLM (``encode``) or looked up (so that a figure shows the
    search alone)."""

    modalities = frozenset({"text"})

    def __init__(self, version: str, dim: int, cached: dict[str, np.ndarray], encode: bool):
        self.name = CACHED_FAMILY
        self.version = version
        self.dim = dim
        self._cached = cached
        self._encode = encode
        self._model: Any = None

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        if not self._encode:
            return np.stack([self._cached[text] for text in texts])
        if self._model is None:
            from mmsearch.encoders.base import create_encoder

            self._model = create_encoder("minilm")
        return self._model.encode_texts(texts)

    def encode_images(self, images: list[Any]) -> np.ndarray:
        raise NotImplementedError("text only")


def mmsearch_arm(args: argparse.Namespace, encoder: QueryEncoder) -> Any:
    from mmsearch.config import Settings
    from mmsearch.encoders.base import register
    from mmsearch.search.request import SearchRequest
    from mmsearch.search.searcher import Searcher

    register(CACHED_FAMILY)(lambda _argument: encoder)
    settings = Settings(home=args.home, text_encoder=CACHED_FAMILY, query_cache_size=0)
    tick = time.perf_counter()
    searcher = Searcher(settings, args.collection)
    opened_s = time.perf_counter() - tick

    def search(request: dict[str, Any]) -> tuple[list[str], dict[str, float]]:
        options: dict[str, Any] = {}
        if request.get("ann"):  # ANN knobs (trees that have them: SearchRequest.ann)
            from mmsearch.config import AnnSearch

            options["ann"] = AnnSearch(**request["ann"])
        result = searcher.search(
            SearchRequest(
                text=request["text"],
                k=request["k"],
                signals=request.get("signals"),
                where=request.get("where"),
                **options,
            )
        )
        return [hit.id for hit in result.hits], dict(result.timings_ms)

    memory = getattr(searcher.index, "memory", None)  # trees with the hot index (index/hot)
    if memory is not None:
        search.hot_memory = dict(memory(), searcher_open_seconds=round(opened_s, 2))  # type: ignore[attr-defined]
    return search


def floor_arm(args: argparse.Namespace, encoder: QueryEncoder) -> Any:
    """faiss HNSW + bm25s + RRF over the same stored rows: what an in-process index costs."""
    import bm25s
    import faiss
    import lance

    from mmsearch.index.schema import KEYWORD_COLUMN, vector_column

    table = next((args.home / "collections" / args.collection / "lancedb").glob("*.lance"))
    column = vector_column("text")
    data = lance.dataset(str(table)).to_table(columns=["id", "title", KEYWORD_COLUMN, column])
    ids = data["id"].to_pylist()
    titles = data["title"].to_pylist()
    vectors = np.asarray(data[column].to_numpy(zero_copy_only=False).tolist(), dtype=np.float32)
    hnsw = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 80
    hnsw.add(vectors)
    hnsw.hnsw.efSearch = 128  # at least the depth
    texts = [t or "" for t in data[KEYWORD_COLUMN].to_pylist()]
    bm25 = bm25s.BM25()
    bm25.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)

    def search(request: dict[str, Any]) -> tuple[list[str], dict[str, float]]:
        text, k = request["text"], request["k"]
        tick = time.perf_counter()
        vector = encoder.encode_texts([text])[0]
        encode_ms = (time.perf_counter() - tick) * 1000
        scores: dict[int, float] = {}
        _, found = hnsw.search(vector[None, :].astype(np.float32), DEPTH)
        for rank, row in enumerate(found[0]):
            if row >= 0:
                scores[int(row)] = scores.get(int(row), 0.0) + 1.0 / (60 + rank + 1)
        tokens = bm25s.tokenize([text], stopwords="en", show_progress=False)
        if getattr(tokens, "vocab", None):
            docs, _ = bm25.retrieve(tokens, k=min(DEPTH, len(ids)), show_progress=False)
            for rank, row in enumerate(docs[0]):
                scores[int(row)] = scores.get(int(row), 0.0) + 1.0 / (60 + rank + 1)
        top = sorted(scores, key=lambda row: (-scores[row], row))[:k]
        _rows = [(ids[row], titles[row]) for row in top]  # the page's rows, as a search shows
        return [item_id for item_id, _ in _rows], {"encode_text": round(encode_ms, 3)}

    return search


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--src", type=Path, help="an mmsearch source tree (its src/ folder)")
    parser.add_argument("--floor", action="store_true", help="faiss HNSW + bm25s + RRF")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--collection", default="bench")
    parser.add_argument("--queries", type=Path, required=True, help="JSON: texts, npy, version")
    parser.add_argument("--no-encode", dest="encode", action="store_false")
    args = parser.parse_args()
    if args.src is not None:
        sys.path.insert(0, str(args.src))
    import mmsearch

    spec = json.loads(args.queries.read_text())
    vectors = np.load(spec["npy"])
    cached = dict(zip(spec["texts"], vectors, strict=True))
    encoder = QueryEncoder(spec["version"], int(vectors.shape[1]), cached, args.encode)
    search = floor_arm(args, encoder) if args.floor else mmsearch_arm(args, encoder)
    ready: dict[str, Any] = {"ready": True, "mmsearch": str(Path(mmsearch.__file__).parent)}
    memory = getattr(search, "hot_memory", None)
    if memory is not None:  # the hot index's bytes per part and build time
        ready["memory"] = memory
    print(json.dumps(ready), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        tick = time.perf_counter()
        found, stages = search(request)
        ms = (time.perf_counter() - tick) * 1000
        print(json.dumps({"ms": ms, "ids": found, "stages": stages}), flush=True)


if __name__ == "__main__":
    main()
