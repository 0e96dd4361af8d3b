"""The LambdaMART reranker's per-query cost against RRF, with the lexical features
computed the old way (a bm25s index over each pool, every word stemmed again) and the
current way (only the query's words scored, tokens cached per text), in one run.

Why: feature extraction was most of the reranker's cost (12x RRF). Each query is
retrieved once per option, interleaved query by query so that every option sees the
same load; the reranker options add feature extraction and model scoring. The two
feature matrices of every query are compared for exact equality before any time is
reported: the speed-up must not change a single feature value.

Usage (a workspace with the Cranfield collection, e.g. built by
``benchmarks/ranking_cv.py --build``)::

    python benchmarks/reranker_latency.py --home /tmp/rankq/home \
        --data /tmp/rankq/cranfield --queries 60
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import bm25s
import numpy as np

from mmsearch.config import Settings
from mmsearch.evaluation.judgments import load_judgments
from mmsearch.evaluation.queries import load_queries
from mmsearch.ranking import features as features_module
from mmsearch.ranking import lexical
from mmsearch.ranking.fusion import FusionParams, fuse, order_by_score
from mmsearch.ranking.model import fit_lambdamart
from mmsearch.retrieval.retrieve import RetrievalQuery
from mmsearch.search.searcher import Searcher


def old_tokens(text: str | None) -> list[str]:
    """Tokens as before: every word stemmed again, nothing cached."""
    stem = lexical.stem.__wrapped__
    words = lexical._WORD.findall((text or "").lower())
    return [stem(w) for w in words if w not in lexical._STOPWORDS]


def old_pool_bm25(query: list[str], documents: list[list[str]]) -> np.ndarray:
    """BM25 as before: a bm25s index over the whole pool for each query."""
    if not query or not any(documents):
        return np.zeros(len(documents))
    model = bm25s.BM25()
    model.index([doc or ["\x00"] for doc in documents], show_progress=False)
    known = [t for t in query if t in model.vocab_dict]
    if not known:
        return np.zeros(len(documents))
    return np.asarray(model.get_scores(known), dtype=np.float64)


def old_lexical_matrix(
    query: str | None, titles: Sequence[str], bodies: Sequence[str]
) -> np.ndarray:
    terms = old_tokens(query)
    title_tokens = [old_tokens(t) for t in titles]
    body_tokens = [old_tokens(b) for b in bodies]
    title_bm25 = old_pool_bm25(terms, title_tokens)
    body_bm25 = old_pool_bm25(terms, body_tokens)
    distinct = set(terms)
    out = np.zeros((len(titles), len(lexical.LEXICAL_FEATURES)), dtype=np.float64)
    for i, (title, body) in enumerate(zip(title_tokens, body_tokens, strict=True)):
        out[i] = [
            title_bm25[i],
            body_bm25[i],
            lexical._share_of_max(title_bm25, i),
            lexical._share_of_max(body_bm25, i),
            lexical.phrase_share(terms, title),
            lexical.phrase_share(terms, body),
            lexical.proximity(terms, body),
            len(distinct & set(body)) / len(distinct) if distinct else 0.0,
        ]
    return out


CURRENT = features_module.lexical_matrix


def features(searcher: Searcher, retrieved: Any, ids: list[str], old: bool) -> np.ndarray:
    features_module.lexical_matrix = old_lexical_matrix if old else CURRENT  # type: ignore[assignment]
    try:
        return searcher.ranking.features(retrieved, ids)
    finally:
        features_module.lexical_matrix = CURRENT


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--collection", default="cranfield")
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    settings = Settings(home=args.home, text_encoder="minilm", image_encoder="visual")
    searcher = Searcher(settings, args.collection)
    judgments = load_judgments(args.data / "qrels.txt")
    queries = [q for q in load_queries(args.data / "queries.jsonl") if judgments.get(q.id)]
    queries = queries[: args.queries]
    depth = args.candidates
    # A model to score with (its quality is not the point): trained on these pools.
    pools = []
    for query in queries:
        r = searcher.retriever.retrieve(RetrievalQuery(text=query.text, image=None, depth=depth))
        ids = order_by_score(fuse("rrf", r.ranked, FusionParams()).scores)
        x_old, x_new = features(searcher, r, ids, True), features(searcher, r, ids, False)
        if not np.array_equal(x_old, x_new, equal_nan=True):
            raise SystemExit(f"query {query.id}: the features differ")
        grades = judgments.get(query.id, {})
        pools.append((x_new, np.asarray([grades.get(i, 0) for i in ids], np.int32)))
    print(f"features equal on {len(pools)} queries", flush=True)
    booster = fit_lambdamart(
        np.vstack([x for x, _ in pools]),
        np.concatenate([y for _, y in pools]),
        [len(y) for _, y in pools],
        {"num_leaves": 7, "n_estimators": 200},
    )
    options = ("RRF (k=60)", "reranker, features before", "reranker, features now")
    wall: dict[str, list[float]] = {name: [] for name in options}
    cpu: dict[str, list[float]] = {name: [] for name in options}
    for query, (round_, name) in itertools.product(queries, enumerate(options)):
        del round_
        tick, cpu_tick = time.perf_counter(), time.process_time()
        r = searcher.retriever.retrieve(RetrievalQuery(text=query.text, image=None, depth=depth))
        fused = fuse("rrf", r.ranked, FusionParams())
        if name != options[0]:
            ids = order_by_score(fused.scores)
            booster.predict(features(searcher, r, ids, name == options[1]))
        wall[name].append((time.perf_counter() - tick) * 1000)
        cpu[name].append((time.process_time() - cpu_tick) * 1000)
    base_wall, base_cpu = float(np.mean(wall[options[0]])), float(np.mean(cpu[options[0]]))
    rows = []
    print("| option | wall ms/query | / RRF | CPU ms/query | / RRF |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in options:
        w, c = float(np.mean(wall[name])), float(np.mean(cpu[name]))
        rows.append({"option": name, "wall_ms": w, "cpu_ms": c})
        print(f"| {name} | {w:.1f} | {w / base_wall:.2f} | {c:.1f} | {c / base_cpu:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"queries": len(queries), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
