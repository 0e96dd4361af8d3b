"""Graph routing on and off for any judged collection (Cranfield: entities from its
attributes), with what routing recognised, a paired test and the time ratio.

``graph_eval.py`` is the emoji study (tuned settings, three entity fields). This asks
the plainer question for another catalog: with a graph made from the fields it has,
does routing change the ranking at all? Cranfield's records carry ``author`` and
``bibliography`` (journal, volume, year) as attributes; its queries are questions about
aerodynamics that name neither, so the graph can only act through meaning matches of
the query against those names. Both arms are the same RRF request (depth 100),
alternating which goes first; the query embeddings are made once beforehand.

Usage::

    python benchmarks/graph_onoff.py --home /tmp/rankq/home --data /tmp/rankq/cranfield \\
        --collection cranfield --fields author,bibliography --json /tmp/gf/cran_graph.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from mmsearch.config import Settings
from mmsearch.encoders.base import create_encoder
from mmsearch.evaluation.judgments import load_judgments
from mmsearch.evaluation.queries import load_queries
from mmsearch.graph.make import make_build_graph
from mmsearch.graph.store import load_graph
from mmsearch.index.open import open_build_index
from mmsearch.ranking.tuning import mean, paired_p, per_query_ndcg10
from mmsearch.retrieval.query_cache import text_key
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher
from mmsearch.workspace import Workspace


def ensure_graph(settings: Settings, collection: str, fields: list[str]) -> dict[str, Any]:
    """Make the live build's graph from ``fields`` unless it has that one; its size."""
    folder = Workspace(settings.home).collection(collection)
    manifest = folder.live_manifest()
    build_dir = folder.build_dir(manifest.build_id)
    stored = load_graph(build_dir)
    if stored is None or stored.graph.fields != fields:
        index = open_build_index(folder, manifest, settings)
        manifest = manifest.model_copy(deep=True)
        manifest.mapping.entities = fields
        make_build_graph(build_dir, manifest, index)
        stored = load_graph(build_dir)
    assert stored is not None
    return {
        "entities": len(stored.graph.entities),
        "clusters": len(stored.graph.clusters),
        "cooccurrence_edges": len(stored.graph.cooccurrence),
        "build_seconds": stored.graph.build_seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--collection", default="cranfield")
    parser.add_argument("--queries", default="queries.jsonl")
    parser.add_argument("--fields", default="author,bibliography")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    settings = Settings(home=args.home)
    graph = ensure_graph(settings, args.collection, [f for f in args.fields.split(",") if f])
    judgments = load_judgments(args.data / "qrels.txt")
    queries = [q for q in load_queries(args.data / args.queries) if judgments.get(q.id)]
    searcher = Searcher(settings, args.collection)
    encoder = searcher.manifest.encoders["text"]
    texts = [q.text or "" for q in queries]
    for text, vector in zip(texts, create_encoder(encoder.spec).encode_texts(texts), strict=True):
        searcher.query_cache.put(text_key(encoder.spec, encoder.version, text), vector)
    runs: dict[bool, dict[str, dict[str, float]]] = {False: {}, True: {}}
    times: dict[bool, list[float]] = {False: [], True: []}
    recognised: dict[str, list[str]] = {}
    searcher.search(SearchRequest(text=texts[0], graph=True, fusion="rrf"))  # warm
    for position, query in enumerate(queries):
        for on in (False, True) if position % 2 == 0 else (True, False):
            tick = time.perf_counter()
            result = searcher.search(
                SearchRequest(
                    text=query.text, k=10, candidates=100, fusion="rrf", feedback=False, graph=on
                )
            )
            times[on].append(time.perf_counter() - tick)
            runs[on][query.id] = {hit.id: hit.score for hit in result.hits}
            if on and result.routing is not None and result.routing.entities:
                recognised[query.id] = [
                    f"{e.entity} ({e.kind} {e.score:.2f})" for e in result.routing.entities
                ]
    off, on = (per_query_ndcg10(runs[arm], judgments) for arm in (False, True))
    p = paired_p(on, off)
    figures = {
        "collection": args.collection,
        "fields": args.fields,
        "graph": graph,
        "queries": len(queries),
        "queries_with_an_entity": len(recognised),
        "examples": dict(list(recognised.items())[:5]),
        "ndcg10_off": round(mean(off), 4),
        "ndcg10_on": round(mean(on), 4),
        "changed_queries": sum(1 for q in off if abs(off[q] - on[q]) > 1e-12),
        "paired_t_p": None if p is None else float(f"{p:.3g}"),
        "ms_off": round(1000 * statistics.fmean(times[False]), 2),
        "ms_on": round(1000 * statistics.fmean(times[True]), 2),
        "ratio_on_to_off": round(statistics.fmean(times[True]) / statistics.fmean(times[False]), 3),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
