"""Emoji text → emoji with the entity graph on and off: nDCG@10, significance, cost.

Why this exists: graph routing is worth its cost only if it beats the best ranking
without it on held-out queries. The baseline is the best configuration of
docs/BENCHMARKS.md ("Ranking", emoji): weighted fusion, z-score, keyword 0.1 and
text_vector 0.9, depth 100, MiniLM + ``visual``. The graph arm is the same request with
routing on; its settings (graph signal weight, least cosine of a meaning match) are
tuned on the dev half and reported on the test half.

Entities come from the catalog items only: category, subcategory (emoji-datasource),
and keywords = the words of the emoji-datasource short names. The text queries are
emojibase tags; no tag enters the graph (the overlap of query texts and keyword values
that arises anyway, since both describe the same pictures, is counted and printed).

Cost, in the same run: the graph's build time (structure, and embedding the entity
names) and the search time with routing on against off, per query (both arms with the
query embeddings computed beforehand in one batch, so the ratio is routing's own).

Usage::

    python benchmarks/graph_eval.py --data /work/shared/datasets/emoji --work /tmp/ge \\
        --limit 600 --budget 840
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from mmsearch.catalog.mapping import FieldMapping
from mmsearch.config import Settings
from mmsearch.datasets.common import split_of
from mmsearch.encoders.base import create_encoder
from mmsearch.evaluation.judgments import load_judgments
from mmsearch.evaluation.queries import load_queries
from mmsearch.graph.build import build_graph, normalise_value
from mmsearch.graph.make import make_build_graph
from mmsearch.graph.settings import RoutingSettings, save_routing
from mmsearch.graph.store import load_graph
from mmsearch.index.open import open_build_index
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.retrieval.query_cache import text_key
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher
from mmsearch.workspace import Workspace

FIELDS = ["category", "subcategory", "keywords"]
BASE = {
    "fusion": "weighted",
    "weights": {"keyword": 0.1, "text_vector": 0.9},
    "normalisation": "zscore",
    "candidates": 100,
    "k": 10,
}
GRID = [(0.1, 0.6), (0.3, 0.6), (0.1, 0.5), (0.3, 0.5), (0.5, 0.5), (0.3, 0.4)]
DEFAULT = (0.1, 0.6)  # when the budget allows no tuning


def prepare(data: Path, work: Path, settings: Settings) -> None:
    catalog = work / "data" / "catalog.jsonl"
    if not catalog.is_file():
        from mmsearch.datasets.emoji import build_emoji

        build_emoji(data, work / "data", with_categories=True, with_keywords=True)
    if Workspace(settings.home).find("emoji") is None:
        mapping = FieldMapping(attributes=FIELDS, entities=FIELDS)
        Ingestor(settings).run(IngestOptions(catalog, "emoji", mapping))


def ndcg_per_query(runs: dict[str, dict[str, float]], judgments: Any) -> dict[str, float]:
    from ranx import Qrels, Run, evaluate

    judged = {q: {i: int(g) for i, g in judgments[q].items()} for q in runs if judgments.get(q)}
    run = {q: (runs[q] or {"__none__": 0.0}) for q in judged}
    scores = evaluate(Qrels(judged), Run(run), "ndcg@10", return_mean=False)
    return dict(zip(sorted(judged), np.asarray(scores).tolist(), strict=True))


def run_arm(
    searcher: Searcher, queries: list[Any], graph: bool, times: list[float] | None = None
) -> dict[str, dict[str, float]]:
    runs: dict[str, dict[str, float]] = {}
    for query in queries:
        tick = time.perf_counter()
        result = searcher.search(SearchRequest(text=query.text, graph=graph, **BASE))
        if times is not None:
            times.append(time.perf_counter() - tick)
        runs[query.id] = {hit.id: hit.score for hit in result.hits}
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description="Emoji text search with the graph on and off.")
    parser.add_argument("--data", type=Path, default=Path("/work/shared/datasets/emoji"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/graph-eval"))
    parser.add_argument("--limit", type=int, default=600, help="first N tag queries")
    parser.add_argument("--budget", type=float, default=840.0, help="seconds for the grid")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--remake", action="store_true", help="remake the graph, timed")
    parser.add_argument(
        "--fields",
        default=",".join(FIELDS),
        help="entity fields of the graph (a subset remakes it from the same build)",
    )
    parser.add_argument("--grid", help="graph_weight:meaning_min,... to try on dev")
    args = parser.parse_args()
    started = time.perf_counter()
    settings = Settings(home=args.work / "home")
    prepare(args.data, args.work, settings)
    folder = Workspace(settings.home).collection("emoji")
    manifest = folder.live_manifest()
    index = open_build_index(folder, manifest, settings)
    fields = [f for f in args.fields.split(",") if f]
    stored_now = load_graph(folder.build_dir(manifest.build_id))
    if stored_now is None or stored_now.graph.fields != fields:
        manifest = manifest.model_copy(deep=True)
        manifest.mapping.entities = fields
        make_build_graph(folder.build_dir(manifest.build_id), manifest, index)
    grid = GRID
    if args.grid:
        grid = [(float(w), float(m)) for w, m in (p.split(":") for p in args.grid.split(","))]

    tick = time.perf_counter()
    structure = build_graph(manifest, index)
    structure_s = time.perf_counter() - tick
    if args.remake:  # also embed the entity names again (slow on a loaded 2-core host)
        make_build_graph(folder.build_dir(manifest.build_id), manifest, index)
    stored = load_graph(folder.build_dir(manifest.build_id))
    assert stored is not None, "the ingest makes the graph"
    graph = stored.graph
    ingest_s = sum((manifest.last_run or {}).get("timings_s", {}).values())

    queries = load_queries(args.work / "data" / "queries-text.jsonl")[: args.limit]
    judgments = load_judgments(args.work / "data" / "qrels.txt")
    dev = [q for q in queries if split_of(q.id) == "dev"]
    test = [q for q in queries if split_of(q.id) == "test"]
    keywords = {e.value for e in structure.entities if e.field == "keywords"}
    overlap = sum(normalise_value(q.text or "") in keywords for q in queries)

    searcher = Searcher(settings, "emoji")
    encoder = manifest.encoders["text"]
    texts = [q.text or "" for q in queries]
    vectors = create_encoder(encoder.spec).encode_texts(texts)
    for text, vector in zip(texts, vectors, strict=True):
        searcher.query_cache.put(text_key(encoder.spec, encoder.version, text), vector)
    searcher.search(SearchRequest(text=texts[0], graph=True, **BASE))  # warm

    baseline_dev = ndcg_per_query(run_arm(searcher, dev, graph=False), judgments)
    tried: list[tuple[float, float, float]] = []
    for weight, least in grid:
        if time.perf_counter() - started > args.budget:
            print(f"grid stopped by the budget after {len(tried)} settings", file=sys.stderr)
            break
        save_routing(folder.folder, RoutingSettings(graph_weight=weight, meaning_min=least))
        scores = ndcg_per_query(run_arm(searcher, dev, graph=True), judgments)
        tried.append((statistics.fmean(scores.values()), weight, least))
        print(f"dev: graph_weight {weight}, meaning_min {least}: {tried[-1][0]:.4f}")
    _, weight, least = max(tried) if tried else (0.0, *DEFAULT)
    save_routing(folder.folder, RoutingSettings(graph_weight=weight, meaning_min=least))

    off_times: list[float] = []
    on_times: list[float] = []
    off_runs: dict[str, dict[str, float]] = {}
    on_runs: dict[str, dict[str, float]] = {}
    for position, query in enumerate(test):  # alternate which arm goes first
        arms = [(False, off_runs, off_times), (True, on_runs, on_times)]
        for graph_on, runs, times in arms if position % 2 == 0 else arms[::-1]:
            runs.update(run_arm(searcher, [query], graph_on, times))
    off = ndcg_per_query(off_runs, judgments)
    on = ndcg_per_query(on_runs, judgments)
    from scipy.stats import ttest_rel, wilcoxon

    ids = sorted(off)
    a = np.array([off[q] for q in ids])
    b = np.array([on[q] for q in ids])
    t_p = float(ttest_rel(b, a).pvalue) if np.any(a != b) else 1.0
    signed: Any = wilcoxon(b, a) if np.any(a != b) else None
    w_p = float(signed.pvalue) if signed is not None else 1.0
    figures = {
        "fields": fields,
        "queries": {"all": len(queries), "dev": len(dev), "test": len(test)},
        "graph": {
            "items": len(graph.items),
            "entities": len(graph.entities),
            "clusters": len(graph.clusters),
            "cooccurrence_edges": len(graph.cooccurrence),
            "hierarchy_edges": len(graph.hierarchy),
            "structure_s": round(structure_s, 3),
            "with_embeddings_s": graph.build_seconds,  # at ingest, or --remake here
            "ingest_s": round(ingest_s, 1),
        },
        "query_texts_equal_to_a_keyword": overlap,
        "dev_baseline": round(statistics.fmean(baseline_dev.values()), 4),
        "dev_grid": [
            {"graph_weight": w, "meaning_min": m, "ndcg10": round(s, 4)} for s, w, m in tried
        ],
        "chosen": {"graph_weight": weight, "meaning_min": least},
        "test_off": round(float(a.mean()), 4),
        "test_on": round(float(b.mean()), 4),
        "wins_ties_losses": [int((b > a).sum()), int((b == a).sum()), int((b < a).sum())],
        "paired_t_p": t_p,
        "wilcoxon_p": w_p,
        "search_ms_off": {
            "mean": round(1000 * statistics.fmean(off_times), 2),
            "median": round(1000 * statistics.median(off_times), 2),
        },
        "search_ms_on": {
            "mean": round(1000 * statistics.fmean(on_times), 2),
            "median": round(1000 * statistics.median(on_times), 2),
        },
        "overhead_ratio_mean": round(statistics.fmean(on_times) / statistics.fmean(off_times), 3),
        "overhead_ratio_median": round(
            statistics.median(on_times) / statistics.median(off_times), 3
        ),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
