"""Graph routing on and off for any judged collection (Cranfield: entities from its
attributes, or found in its text), with what routing recognised, a paired test and the
time ratio.

``graph_eval.py`` is the emoji study (tuned settings, three entity fields). This asks
the plainer question for another catalog: with a graph made from the fields it has,
does routing change the ranking at all? Cranfield's records carry ``author`` and
``bibliography`` (journal, volume, year) as attributes; its queries are questions about
aerodynamics that name neither, so the graph can only act through meaning matches of
the query against those names. ``--text-fields title,text`` adds entities found in the
text (``graph/text_entities.py``: the names of those entities and up to ``--phrases``
mined phrases such as "boundary layer"), which queries do name. Both arms are the
same RRF request (depth 100), alternating which goes first; the query embeddings are
made once beforehand.

Usage::

    python benchmarks/graph_onoff.py --home /tmp/rankq/home --data /tmp/rankq/cranfield \\
        --collection cranfield --fields author,bibliography --json /tmp/gf/cran_graph.json
    python benchmarks/graph_onoff.py --home /tmp/gtext/home --data /tmp/rankq/cranfield \\
        --collection cranfield --fields '' --text-fields title,text --json /tmp/gtext/text.json

The graph is remade when the live build's graph was made from other fields; its build
time is reported whole (structure and name embeddings) and for the structure alone
(``build_graph``: entities, phrase mining and matching, co-occurrence), timed again.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from mmsearch.config import Settings
from mmsearch.encoders.base import create_encoder
from mmsearch.evaluation.judgments import load_judgments
from mmsearch.evaluation.queries import load_queries
from mmsearch.graph.build import build_graph
from mmsearch.graph.make import make_build_graph
from mmsearch.graph.settings import RoutingSettings, load_routing, save_routing
from mmsearch.graph.store import load_graph
from mmsearch.index.open import open_build_index
from mmsearch.ranking.tuning import mean, paired_p, per_query_ndcg10
from mmsearch.retrieval.query_cache import text_key
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher
from mmsearch.workspace import Workspace


def ensure_graph(
    settings: Settings, collection: str, fields: list[str], text_fields: list[str], phrases: int
) -> dict[str, Any]:
    """Make the live build's graph from these fields unless it has that one; its size."""
    folder = Workspace(settings.home).collection(collection)
    manifest = folder.live_manifest()
    build_dir = folder.build_dir(manifest.build_id)
    stored = load_graph(build_dir)
    wanted = (fields, text_fields, phrases if text_fields else 0)
    if (
        stored is None
        or (
            stored.graph.fields,
            stored.graph.text_fields,
            stored.graph.phrases if text_fields else 0,
        )
        != wanted
    ):
        index = open_build_index(folder, manifest, settings)
        manifest = manifest.model_copy(deep=True)
        manifest.mapping.entities = fields
        manifest.mapping.entity_text_fields = text_fields
        manifest.mapping.entity_phrases = phrases
        make_build_graph(build_dir, manifest, index)
        tick = time.perf_counter()
        build_graph(manifest, index)
        structure_seconds = time.perf_counter() - tick
        stored = load_graph(build_dir)
    else:
        structure_seconds = None
    assert stored is not None
    graph = stored.graph
    by_field = Counter(entity.field for entity in graph.entities)
    return {
        "entities": len(graph.entities),
        "entities_by_field": dict(by_field.most_common()),
        "phrases_mined": graph.phrases,
        "clusters": len(graph.clusters),
        "cooccurrence_edges": len(graph.cooccurrence),
        "build_seconds": graph.build_seconds,
        "structure_seconds": None if structure_seconds is None else round(structure_seconds, 2),
    }


def _set_routing(
    settings: Settings, collection: str, weight: float | None, meaning_top: int | None
) -> RoutingSettings:
    """The collection's routing settings, with the given ones saved over them (the
    searches of both arms read the file, as a served collection would)."""
    folder = Workspace(settings.home).collection(collection).folder
    routing = load_routing(folder)
    changes = {
        key: value
        for key, value in (("graph_weight", weight), ("meaning_top", meaning_top))
        if value is not None
    }
    if changes:
        routing = routing.model_copy(update=changes)
        save_routing(folder, routing)
    return routing


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--collection", default="cranfield")
    parser.add_argument("--queries", default="queries.jsonl")
    parser.add_argument("--fields", default="author,bibliography")
    parser.add_argument("--text-fields", default="", help="e.g. title,text")
    parser.add_argument("--phrases", type=int, default=1000, help="phrases mined at most")
    parser.add_argument("--examples", type=int, default=12, help="recognised queries shown")
    parser.add_argument(
        "--graph-weight", type=float, default=None, help="routing's graph_weight (saved)"
    )
    parser.add_argument(
        "--meaning-top", type=int, default=None, help="routing's meaning_top (saved)"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    settings = Settings(home=args.home)
    graph = ensure_graph(
        settings,
        args.collection,
        [f for f in args.fields.split(",") if f],
        [f for f in args.text_fields.split(",") if f],
        args.phrases,
    )
    routing = _set_routing(settings, args.collection, args.graph_weight, args.meaning_top)
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
    asked = {query.id: query.text for query in queries}
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
        "text_fields": args.text_fields,
        "graph": graph,
        "routing": routing.model_dump(exclude_defaults=True),
        "query_file": args.queries,
        "load_average": [round(value, 1) for value in os.getloadavg()],
        "queries": len(queries),
        "queries_with_an_entity": len(recognised),
        "queries_with_a_text_entity": sum(
            any(name.startswith("text:") for name in names) for names in recognised.values()
        ),
        "mentions_by_kind": dict(
            Counter(name.rsplit("(", 1)[1].split(" ")[0] for v in recognised.values() for name in v)
        ),
        "examples": {
            q: {"query": asked[q], "entities": names}
            for q, names in list(recognised.items())[: args.examples]
        },
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
