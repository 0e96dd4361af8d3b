"""Ranking benchmark: single signals vs RRF vs tuned weighted fusion vs DBSF vs LambdaMART.

Why this exists: fusion and reranking choices are only worth their complexity if they
beat the best single retriever on held-out queries. Each dataset is built with the
project's own builders (``mmsearch.datasets``), ingested with the default offline
encoders (MiniLM for text, the ``visual`` descriptor for images), and every query is
retrieved once to depth ``--candidates``; all fusion variants are then computed from
the same candidate lists, so the comparison is on equal terms.

- Split: the builders' seeded dev/test split of query ids (``split_of``).
- Weighted fusion: the weights (grid over the keyword share, step 0.1) and the
  normalisation (min-max or z-score) are tuned on dev by nDCG@10; reported on test.
- Reranker: LambdaMART fitted on dev queries, reported on test; plus the mean of a
  5-fold query-grouped cross-validation over all queries (as ``train-ranker`` prints).
- Metric: nDCG@10 from ranx, over the judged queries of each half.

Usage::

    python benchmarks/ranking_eval.py --datasets cranfield,emoji --work /tmp/rank-bench
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from mmsearch.config import Settings
from mmsearch.datasets.common import split_of
from mmsearch.errors import MMSearchError
from mmsearch.evaluation.judgments import load_judgments
from mmsearch.evaluation.queries import load_queries
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.ranking.fusion import FusionParams, fuse, order_by_score
from mmsearch.ranking.model import fit_lambdamart
from mmsearch.ranking.training import QueryPool, cross_validate, ndcg_at_10
from mmsearch.retrieval.retrieve import Retrieved
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher

Run = dict[str, dict[str, float]]


def build(name: str, data: Path, out: Path) -> None:
    if (out / "catalog.jsonl").is_file():
        return
    if name == "cranfield":
        from mmsearch.datasets.cranfield import build_cranfield

        build_cranfield(data / "cranfield", out)
    else:
        from mmsearch.datasets.emoji import build_emoji

        build_emoji(data / "emoji", out)


def queries_file(name: str, out: Path) -> Path:
    return out / ("queries.jsonl" if name == "cranfield" else "queries-text.jsonl")


def retrieve_all(
    searcher: Searcher, name: str, out: Path, candidates: int, limit: int | None
) -> tuple[dict[str, Retrieved], dict[str, str]]:
    queries = load_queries(queries_file(name, out))
    if limit:
        queries = queries[:limit]
    retrieved, splits = {}, {}
    for query in queries:
        request = SearchRequest(text=query.text, k=10, candidates=candidates, rules="none")
        retrieved[query.id] = searcher.retrieve(request)
        splits[query.id] = split_of(query.id)
    return retrieved, splits


def fused_run(retrieved: dict[str, Retrieved], method: str, params: FusionParams) -> Run:
    return {q: fuse(method, r.ranked, params).scores for q, r in retrieved.items()}


def signal_run(retrieved: dict[str, Retrieved], signal: str) -> Run:
    return {
        q: {
            m.id: float(len(r.ranked.get(signal, [])) - i)
            for i, m in enumerate(r.ranked.get(signal, []))
        }
        for q, r in retrieved.items()
    }


def part(run: Run, splits: dict[str, str], split: str) -> Run:
    return {q: scores for q, scores in run.items() if splits[q] == split}


def tune_weighted(
    retrieved: dict[str, Retrieved], splits: dict[str, str], judgments: Any, signals: list[str]
) -> tuple[FusionParams, float]:
    """Grid over the first signal's share (two-signal case) and the normalisation, on dev."""
    best: tuple[float, FusionParams] = (-1.0, FusionParams())
    dev = {q: r for q, r in retrieved.items() if splits[q] == "dev"}
    for normalisation in ("minmax", "zscore"):
        for share in np.round(np.arange(0.0, 1.0001, 0.1), 2):
            weights = {signals[0]: float(share), signals[1]: float(1 - share)}
            if all(w == 0 for w in weights.values()):
                continue
            params = FusionParams(weights=weights, normalisation=normalisation)
            score = ndcg_at_10(fused_run(dev, "weighted", params), judgments)
            if score > best[0]:
                best = (score, params)
    return best[1], best[0]


def pools_of(
    searcher: Searcher, retrieved: dict[str, Retrieved], judgments: Any
) -> list[QueryPool]:
    pools = []
    params = FusionParams(k=searcher.settings.rrf_k)
    for qid, r in retrieved.items():
        rrf = fuse("rrf", r.ranked, params).scores
        ids = order_by_score(rrf)
        if not ids:
            continue
        grades = judgments.get(qid, {})
        labels = np.asarray([grades.get(i, 0) for i in ids], dtype=np.int32)
        pools.append(QueryPool(qid, ids, searcher.ranking.features(r, ids), labels, rrf))
    return pools


def evaluate(name: str, args: argparse.Namespace) -> dict[str, Any]:
    out = args.work / name
    build(name, args.data, out)
    settings = Settings(
        home=args.work / "home",
        text_encoder="minilm",
        image_encoder="visual",
        image_roots=[args.data.resolve()],  # the emoji catalog points into the shared datasets
    )
    tick = time.perf_counter()
    try:
        searcher = Searcher(settings, name)  # reuse an earlier run's collection
    except MMSearchError:
        Ingestor(settings).run(IngestOptions(out / "catalog.jsonl", name))
        searcher = Searcher(settings, name)
    ingest_s = time.perf_counter() - tick
    judgments = load_judgments(out / "qrels.txt")
    tick = time.perf_counter()
    retrieved, splits = retrieve_all(searcher, name, out, args.candidates, args.limit)
    retrieve_s = time.perf_counter() - tick
    signals = sorted({s for r in retrieved.values() for s in r.ranked})
    test = lambda run: round(ndcg_at_10(part(run, splits, "test"), judgments), 4)  # noqa: E731
    rows: dict[str, float] = {}
    for signal in signals:
        rows[f"{signal} only"] = test(signal_run(retrieved, signal))
    rows["RRF (k=60)"] = test(fused_run(retrieved, "rrf", FusionParams()))
    params, dev_score = tune_weighted(retrieved, splits, judgments, signals)
    weights = ", ".join(f"{s}={w:.1f}" for s, w in (params.weights or {}).items())
    rows[f"weighted ({params.normalisation}; {weights}; tuned on dev)"] = test(
        fused_run(retrieved, "weighted", params)
    )
    rows["DBSF"] = test(fused_run(retrieved, "dbsf", FusionParams()))
    tick = time.perf_counter()
    pools = pools_of(searcher, retrieved, judgments)
    dev_pools = [p for p in pools if splits[p.qid] == "dev"]
    test_pools = [p for p in pools if splits[p.qid] == "test"]
    x = np.vstack([p.x for p in dev_pools])
    y = np.concatenate([p.labels for p in dev_pools])
    booster = fit_lambdamart(x, y, [len(p.ids) for p in dev_pools])
    model_run = {
        p.qid: dict(zip(p.ids, booster.predict(p.x).tolist(), strict=True)) for p in test_pools
    }
    rows["LambdaMART reranker (fit on dev)"] = round(ndcg_at_10(model_run, judgments), 4)
    folds = cross_validate(pools, judgments, folds=5, seed=13)
    train_s = time.perf_counter() - tick
    return {
        "dataset": name,
        "items": searcher.index.row_count(),
        "queries": {s: sum(1 for v in splits.values() if v == s) for s in ("dev", "test")},
        "candidates": args.candidates,
        "test_ndcg10": rows,
        "weighted_dev_ndcg10": round(dev_score, 4),
        "cv5": {
            "rrf": round(float(np.mean([f.rrf_ndcg10 for f in folds])), 4),
            "reranker": round(float(np.mean([f.model_ndcg10 for f in folds])), 4),
        },
        "seconds": {
            "ingest": round(ingest_s, 1),
            "retrieve": round(retrieve_s, 1),
            "rerank_train_and_cv": round(train_s, 1),
        },
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"**{result['dataset']}** — {result['items']} items, "
        f"{result['queries']['dev']} dev / {result['queries']['test']} test queries, "
        f"depth {result['candidates']} per retriever",
        "",
        "| ranking | nDCG@10 (test half) |",
        "| --- | ---: |",
    ]
    lines += [f"| {name} | {score:.4f} |" for name, score in result["test_ndcg10"].items()]
    cv = result["cv5"]
    lines += [
        "",
        f"5-fold query-grouped CV over all queries: RRF {cv['rrf']:.4f}, "
        f"reranker {cv['reranker']:.4f}. Weighted fusion on dev: "
        f"{result['weighted_dev_ndcg10']:.4f}. Times (s): {result['seconds']}.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets"
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/mmsearch-ranking-bench"))
    parser.add_argument("--datasets", default="cranfield,emoji")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--limit", type=int, default=None, help="at most N queries per dataset")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = [evaluate(name.strip(), args) for name in args.datasets.split(",") if name.strip()]
    print(f"command: python benchmarks/ranking_eval.py {shlex.join(sys.argv[1:])}\n")
    for result in results:
        print(markdown(result) + "\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
