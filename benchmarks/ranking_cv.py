"""Ranking options under 5-fold query-grouped CV: RRF, DBSF, tuned fusion, keyword
feedback (RM3), and the LambdaMART reranker with its pool features.

Why this exists: a one-off dev/test split of Cranfield has about 100 queries a side,
too few to tell the options apart. Here every query is retrieved once without and
once with keyword feedback (depth ``--candidates``); then, for each of 5 query folds,
whatever is learned (fusion choice by ``ranking/tuning.py``; LambdaMART parameters by
an inner grouped CV, ``ranking/param_search.py``) is learned on the other 4 folds and
scored on the held-out one. Every query thus gets one held-out nDCG@10 per option;
options are compared with RRF by a paired t-test over all queries. Latency: each
option's mean per-query cost (retrieval + fusion, + feature extraction and model
scoring for the reranker) as a ratio to RRF's, measured in the same run.

The reranker's features include the entity graph's (``graph/features.py``) where the
build has a graph, and those of keyword feedback (``ranking/pool_feedback.py``: the
feedback pass's keyword list, as a reranking search keeps it); the reranker is also
scored without each group, so its share of any gain is measured. ``--holdout test``
replaces the 5 folds by the builders' dev/test split (learn on dev, score the test
half), for collections whose figures are reported on that split (emoji).

Usage (reuses a workspace built by ``benchmarks/ranking_eval.py`` or by ingesting the
dataset; ``--build`` ingests it first when missing)::

    python benchmarks/ranking_cv.py --home /tmp/rankq/home --data /tmp/rankq/cranfield \
        --collection cranfield --json /tmp/rankq/cv.json
    python benchmarks/ranking_cv.py --home /tmp/ge/home --data /tmp/ge/data --collection emoji \
        --queries queries-text.jsonl --limit 600 --holdout test --json /tmp/gf/emoji.json
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from mmsearch.config import Settings
from mmsearch.datasets.common import split_of
from mmsearch.evaluation.judgments import load_judgments
from mmsearch.evaluation.queries import load_queries
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.ranking.features import FEEDBACK_FEATURES, GRAPH_FEATURES, FeatureSpace
from mmsearch.ranking.fusion import FusionParams, fuse, order_by_score
from mmsearch.ranking.model import fit_lambdamart
from mmsearch.ranking.param_search import feature_importance, search_params
from mmsearch.ranking.training import QueryPool, query_folds
from mmsearch.ranking.tuning import (
    FEEDBACK_VARIANT,
    PLAIN_VARIANT,
    FusionChoice,
    fused_run,
    mean,
    paired_p,
    per_query_ndcg10,
    single_run,
    tune_fusion,
)
from mmsearch.retrieval.expansion import FeedbackSettings
from mmsearch.retrieval.retrieve import RetrievalQuery, Retrieved
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher

Run = dict[str, dict[str, float]]


def retrieve_all(
    searcher: Searcher, queries: list[Any], depth: int, feedback: FeedbackSettings | None
) -> tuple[dict[str, Retrieved], dict[str, float]]:
    """Each query's candidates, and its retrieval time in ms (encoding cached after the
    first variant, so the feedback pass is timed on a warm cache: compare like runs)."""
    out: dict[str, Retrieved] = {}
    times: dict[str, float] = {}
    for query in queries:
        tick = time.perf_counter()
        out[query.id] = searcher.retriever.retrieve(
            RetrievalQuery(text=query.text, image=None, depth=depth, feedback=feedback)
        )
        times[query.id] = (time.perf_counter() - tick) * 1000
    return out, times


def timed_fusion(retrieved: dict[str, Retrieved], choice: FusionChoice) -> tuple[Run, float]:
    tick = time.perf_counter()
    run = fused_run({q: r.ranked for q, r in retrieved.items()}, choice)
    return run, (time.perf_counter() - tick) * 1000 / max(len(retrieved), 1)


def reranker_features(searcher: Searcher, r: Retrieved, ids: list[str]) -> np.ndarray:
    """The pool's features as a search computes them, graph evidence included."""
    graph = searcher.router.evidence(SearchRequest(text=r.text), None, None)
    return searcher.ranking.features(r, ids, graph)


def pools_of(
    searcher: Searcher, retrieved: dict[str, Retrieved], judgments: Any
) -> tuple[list[QueryPool], float, float]:
    """The pools, the mean ms of their features, and of the graph columns alone."""
    pools, tick, graph_s = [], time.perf_counter(), 0.0
    for qid, r in retrieved.items():
        rrf = fuse("rrf", r.ranked, FusionParams()).scores
        ids = order_by_score(rrf)
        if not ids:
            continue
        grades = judgments.get(qid, {})
        labels = np.asarray([grades.get(i, 0) for i in ids], dtype=np.int32)
        pools.append(QueryPool(qid, ids, reranker_features(searcher, r, ids), labels, rrf))
        evidence = searcher.router.evidence(SearchRequest(text=r.text), None, None)
        if evidence is not None:
            started = time.perf_counter()
            evidence(ids)
            graph_s += time.perf_counter() - started
    count = max(len(pools), 1)
    return pools, (time.perf_counter() - tick) * 1000 / count, graph_s * 1000 / count


def without_graph(pools: list[QueryPool]) -> list[QueryPool]:
    """The same pools without the graph columns (the feature set before them)."""
    cut = len(GRAPH_FEATURES)
    return [QueryPool(p.qid, p.ids, p.x[:, :-cut], p.labels, p.rrf) for p in pools]


def without_columns(pools: list[QueryPool], names: list[str], drop: set[str]) -> list[QueryPool]:
    """The same pools without the named columns."""
    keep = [i for i, name in enumerate(names) if name not in drop]
    return [QueryPool(p.qid, p.ids, p.x[:, keep], p.labels, p.rrf) for p in pools]


def feedback_names(space: FeatureSpace) -> set[str]:
    """The columns that read keyword feedback (its list, and the pool's feedback)."""
    return {*FEEDBACK_FEATURES, *space.pool_feedback_names()}


def keep_feedback_lists(plain: dict[str, Retrieved], feedback: dict[str, Retrieved]) -> None:
    """Give each plain retrieval the keyword list of its feedback retrieval, as a search
    that reranks keeps it (``RetrievalQuery.feedback_list``, same settings): the
    reranker's feedback features read it."""
    for qid, retrieved in plain.items():
        if qid in feedback:
            retrieved.feedback = feedback[qid].ranked.get("keyword")


def reranker_cv(
    pools: list[QueryPool],
    judgments: Any,
    folds: list[list[str]],
    tune: bool,
    base: dict[str, Any] | None = None,
) -> tuple[Run, list[dict[str, Any]], float]:
    """Held-out model scores for every query; the parameters each fold chose (``base``:
    LightGBM parameters over ``ranking/model.py``'s defaults where none are chosen)."""
    run: Run = {}
    chosen: list[dict[str, Any]] = []
    predict_ms: list[float] = []
    by_id = {p.qid: p for p in pools}
    for held in folds:
        train = [p for p in pools if p.qid not in set(held)]
        params, _ = search_params(train, judgments, folds=2) if tune else (dict(base or {}), [])
        chosen.append(params)
        booster = fit_lambdamart(
            np.vstack([p.x for p in train]),
            np.concatenate([p.labels for p in train]),
            [len(p.ids) for p in train],
            params,
        )
        for qid in held:
            if qid in by_id:
                tick = time.perf_counter()
                scores = booster.predict(by_id[qid].x)
                predict_ms.append((time.perf_counter() - tick) * 1000)
                run[qid] = dict(
                    zip(by_id[qid].ids, np.asarray(scores, float).tolist(), strict=True)
                )
    return run, chosen, float(np.mean(predict_ms)) if predict_ms else 0.0


def fusion_cv(
    plain: dict[str, Retrieved],
    feedback: dict[str, Retrieved],
    judgments: Any,
    folds: list[list[str]],
) -> tuple[Run, list[str]]:
    run: Run = {}
    labels: list[str] = []
    for held in folds:
        train = {q for q in plain if q not in set(held)}
        variants = {
            PLAIN_VARIANT: {q: plain[q].ranked for q in train},
            FEEDBACK_VARIANT: {q: feedback[q].ranked for q in train},
        }
        choice, _ = tune_fusion(variants, judgments)
        labels.append(choice.label())
        source = feedback if choice.feedback else plain
        run.update(fused_run({q: source[q].ranked for q in held if q in source}, choice))
    return run, labels


def measure_latency(searcher: Searcher, queries: list[Any], depth: int, booster: Any) -> Run:
    """Per-query ms of each option on a warm query-embedding cache, interleaved query by
    query so that every option sees the same load: retrieval + fusion, and for the
    reranker also feature extraction and model scoring."""
    options: dict[str, dict[str, float]] = {}
    for query in queries:  # warm: every query's embedding cached, models loaded
        searcher.retriever.retrieve(RetrievalQuery(text=query.text, image=None, depth=depth))
    for query in queries:
        for name, feedback, method, rerank in (
            ("RRF (k=60)", None, "rrf", False),
            ("DBSF", None, "dbsf", False),
            ("keyword feedback (RM3) + DBSF", FeedbackSettings(), "dbsf", False),
            ("reranker", None, "rrf", True),
        ):
            tick = time.perf_counter()
            r = searcher.retriever.retrieve(
                RetrievalQuery(
                    text=query.text,
                    image=None,
                    depth=depth,
                    feedback=feedback,
                    feedback_list=FeedbackSettings() if rerank else None,
                )
            )
            fused = fuse(method, r.ranked, FusionParams())
            if rerank:
                ids = order_by_score(fused.scores)
                booster.predict(reranker_features(searcher, r, ids))
            options.setdefault(name, {})[query.id] = (time.perf_counter() - tick) * 1000
    return options


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--home", type=Path, required=True, help="mmsearch workspace")
    parser.add_argument("--data", type=Path, required=True, help="dataset folder (builder output)")
    parser.add_argument("--collection", default="cranfield")
    parser.add_argument("--queries", default="queries.jsonl")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--no-param-search", action="store_true")
    parser.add_argument("--build", action="store_true", help="ingest the catalog if missing")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--latency", type=int, default=0, help="time the options on the first N queries only"
    )
    parser.add_argument(
        "--cache", type=Path, default=None, help="folder keeping the retrieved lists between runs"
    )
    parser.add_argument(
        "--no-feedback", action="store_true", help="skip the keyword-feedback retrieval"
    )
    parser.add_argument("--no-tune", action="store_true", help="skip the tuned-fusion CV")
    parser.add_argument(
        "--lgbm-params",
        default=None,
        help="JSON LightGBM parameters over the defaults for the unsearched reranker rows, "
        "e.g. '{\"num_leaves\": 15}'",
    )
    parser.add_argument(
        "--feedback-pools",
        action="store_true",
        help="also train and score the reranker on the keyword-feedback candidates",
    )
    parser.add_argument(
        "--holdout",
        choices=("test",),
        default=None,
        help="learn on the dev half and score the test half instead of 5 folds",
    )
    args = parser.parse_args()

    settings = Settings(home=args.home, text_encoder="minilm", image_encoder="visual")
    if args.build and not (args.home / "collections" / args.collection).is_dir():
        Ingestor(settings).run(IngestOptions(args.data / "catalog.jsonl", args.collection))
    searcher = Searcher(settings, args.collection)
    judgments = load_judgments(args.data / "qrels.txt")
    queries = [q for q in load_queries(args.data / args.queries) if judgments.get(q.id)]
    queries = queries[: args.limit] if args.limit else queries
    started = time.perf_counter()
    name = f"{args.collection}-{searcher.build_id}-{len(queries)}"
    name += "-nofb.pickle" if args.no_feedback else ".pickle"
    cache: Path | None = args.cache / name if args.cache else None
    if cache is not None and cache.is_file():
        plain, plain_ms, feedback, feedback_ms = pickle.loads(cache.read_bytes())
    else:
        retrieve_all(searcher, queries[:5], args.candidates, None)  # warm up models, caches
        plain, plain_ms = retrieve_all(searcher, queries, args.candidates, None)
        print(f"retrieved {len(plain)} queries", file=sys.stderr, flush=True)
        if args.no_feedback:
            feedback, feedback_ms = plain, plain_ms
        else:
            feedback, feedback_ms = retrieve_all(
                searcher, queries, args.candidates, FeedbackSettings()
            )
        if cache is not None:
            cache.write_bytes(pickle.dumps((plain, plain_ms, feedback, feedback_ms)))
    retrieve_s = time.perf_counter() - started
    if not args.no_feedback:
        keep_feedback_lists(plain, feedback)
    print(f"retrieval done in {retrieve_s:.0f} s", file=sys.stderr, flush=True)

    if args.latency:
        pool_file = cache.with_suffix(".pools.pickle") if cache is not None else None
        if pool_file is None or not pool_file.is_file():
            print("--latency needs --cache from a full run (its pools)", file=sys.stderr)
            return 2
        pools = pickle.loads(pool_file.read_bytes())[0]
        assert pools[0].x.shape[1] == len(searcher.ranking.space.names()), "stale pool cache"
        booster = fit_lambdamart(
            np.vstack([p.x for p in pools]),
            np.concatenate([p.labels for p in pools]),
            [len(p.ids) for p in pools],
            {"num_leaves": 7, "learning_rate": 0.05, "n_estimators": 200},
        )
        timed = measure_latency(searcher, queries[: args.latency], args.candidates, booster)
        base = float(np.mean(list(timed["RRF (k=60)"].values())))
        for name, per_query in timed.items():
            ms = float(np.mean(list(per_query.values())))
            print(f"| {name} | {ms:.1f} ms | {ms / base:.2f} |")
        return 0
    folds = query_folds([q.id for q in queries], 5, seed=13)
    if args.holdout:
        folds = [[q.id for q in queries if split_of(q.id) == args.holdout]]
    runs: dict[str, Run] = {}
    cost: dict[str, float] = {}
    base_ms = float(np.mean(list(plain_ms.values())))
    fb_ms = float(np.mean(list(feedback_ms.values())))
    for name, source, choice, retrieval in (
        ("RRF (k=60)", plain, FusionChoice(), base_ms),
        ("DBSF", plain, FusionChoice(method="dbsf"), base_ms),
        ("keyword feedback (RM3) + RRF", feedback, FusionChoice(feedback=True), fb_ms),
        (
            "keyword feedback (RM3) + DBSF",
            feedback,
            FusionChoice(method="dbsf", feedback=True),
            fb_ms,
        ),
    ):
        runs[name], fusion_ms = timed_fusion(source, choice)
        cost[name] = retrieval + fusion_ms
    for signal in sorted({s for r in plain.values() for s in r.ranked}):
        runs[f"{signal} only"] = single_run({q: r.ranked for q, r in plain.items()}, signal)
        cost[f"{signal} only"] = base_ms
    runs["keyword + feedback only"] = single_run(
        {q: r.ranked for q, r in feedback.items()}, "keyword"
    )
    cost["keyword + feedback only"] = fb_ms
    if args.no_feedback:
        for name in [name for name in runs if "feedback" in name]:
            del runs[name], cost[name]
    tick = time.perf_counter()
    tuned_labels: list[str] = []
    if not args.no_tune:
        runs["tuned fusion (per fold)"], tuned_labels = fusion_cv(plain, feedback, judgments, folds)
        cost["tuned fusion (per fold)"] = float("nan")  # the cost of whichever choice won
    tune_s = time.perf_counter() - tick

    print(f"fusion tuned in {tune_s:.0f} s", file=sys.stderr, flush=True)
    tick = time.perf_counter()
    pool_cache = cache.with_suffix(".pools.pickle") if cache is not None else None
    space = FeatureSpace.for_build(searcher.manifest, searcher.index.schema)
    names = space.names()
    if pool_cache is not None and pool_cache.is_file():
        pools, feature_ms, graph_ms = pickle.loads(pool_cache.read_bytes())
        assert pools[0].x.shape[1] == len(names), "stale pool cache: remove it"
    else:
        pools, feature_ms, graph_ms = pools_of(searcher, plain, judgments)
        if pool_cache is not None:
            pool_cache.write_bytes(pickle.dumps((pools, feature_ms, graph_ms)))
    print(f"features in {time.perf_counter() - tick:.0f} s", file=sys.stderr, flush=True)
    has_graph = any(p.x[:, -len(GRAPH_FEATURES) :].any() for p in pools)
    base = json.loads(args.lgbm_params) if args.lgbm_params else None
    runs["reranker, default parameters"], _, predict_ms = reranker_cv(
        pools, judgments, folds, tune=False, base=base
    )
    if has_graph:
        runs["reranker without graph features, default parameters"], _, _ = reranker_cv(
            without_graph(pools), judgments, folds, tune=False, base=base
        )
    if not args.no_feedback:
        no_feedback = without_columns(pools, names, feedback_names(space))
        runs["reranker without feedback features, default parameters"], _, _ = reranker_cv(
            no_feedback, judgments, folds, tune=False, base=base
        )
        if has_graph:  # the feature set before the feedback features, with and without graph
            name = "reranker without feedback or graph features, default parameters"
            runs[name], _, _ = reranker_cv(
                without_graph(no_feedback), judgments, folds, tune=False, base=base
            )
    if not args.no_param_search:
        runs["reranker, parameters by grouped CV"], chosen, predict_ms = reranker_cv(
            pools, judgments, folds, tune=True
        )
        if has_graph:
            runs["reranker without graph features, parameters by grouped CV"], _, _ = reranker_cv(
                without_graph(pools), judgments, folds, tune=True
            )
    else:
        chosen = []
    if args.feedback_pools:
        feedback_pools, _, _ = pools_of(searcher, feedback, judgments)
        runs["reranker on feedback candidates, default parameters"], _, _ = reranker_cv(
            feedback_pools, judgments, folds, tune=False
        )
        if not args.no_param_search:
            runs["reranker on feedback candidates, parameters by grouped CV"], _, _ = reranker_cv(
                feedback_pools, judgments, folds, tune=True
            )
    rerank_cost = cost["RRF (k=60)"] + feature_ms + predict_ms
    for name in runs:
        if name.startswith("reranker"):
            extra = fb_ms - base_ms if "feedback candidates" in name else 0.0
            cost[name] = rerank_cost + extra
    # Importances from one fit on every query, with the parameters the folds chose most.
    votes = [json.dumps(c, sort_keys=True) for c in chosen]
    final_params = json.loads(max(set(votes), key=votes.count)) if votes else {}
    booster = fit_lambdamart(
        np.vstack([p.x for p in pools]),
        np.concatenate([p.labels for p in pools]),
        [len(p.ids) for p in pools],
        final_params,
    )
    importance = feature_importance(booster, names)
    rerank_s = time.perf_counter() - tick

    if args.holdout:  # every option scored on the held-out half only
        held = set(folds[0])
        runs = {name: {q: r for q, r in run.items() if q in held} for name, run in runs.items()}
    scores = {name: per_query_ndcg10(run, judgments) for name, run in runs.items()}
    rrf = scores["RRF (k=60)"]
    singles = [name for name in scores if name.endswith(" only")]
    best_single = max(singles, key=lambda name: mean(scores[name]))
    rows = []
    for name, per_query in scores.items():
        p = paired_p(per_query, rrf) if name != "RRF (k=60)" else None
        p_single = paired_p(per_query, scores[best_single]) if name != best_single else None
        wins = sum(1 for q in per_query if per_query[q] > rrf.get(q, 0) + 1e-12)
        losses = sum(1 for q in per_query if per_query[q] < rrf.get(q, 0) - 1e-12)
        ratio = cost[name] / cost["RRF (k=60)"] if not np.isnan(cost[name]) else None
        rows.append(
            {
                "option": name,
                "ndcg10": round(mean(per_query), 4),
                "p_vs_rrf": None if p is None else round(p, 4),
                "p_vs_best_single": None if p_single is None else round(p_single, 4),
                "wins_losses": f"{wins}/{losses}",
                "latency_ratio": None if ratio is None else round(ratio, 2),
            }
        )
    result = {
        "collection": args.collection,
        "queries": len(queries),
        "scored": "test half" if args.holdout else "5-fold CV",
        "scored_queries": len(rrf),
        "candidates": args.candidates,
        "rows": rows,
        "best_single_signal": best_single,
        "tuned_choices": tuned_labels,
        "reranker_pairs": reranker_pairs(scores),
        "reranker_params_per_fold": chosen,
        "feature_importance": importance,
        "ms_per_query": {
            "retrieval": round(base_ms, 1),
            "retrieval_with_feedback": round(fb_ms, 1),
            "features": round(feature_ms, 1),
            "graph_features": round(graph_ms, 2),
            "model": round(predict_ms, 2),
        },
        "seconds": {
            "retrieve": round(retrieve_s, 1),
            "tune": round(tune_s, 1),
            "rerank": round(rerank_s, 1),
        },
    }
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def reranker_pairs(scores: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Paired t-tests between reranker rows that differ in one group of features (all
    features against each ablation; graph columns with vs without where the feedback
    columns are left out), and of the reranker against the best non-learned fusion."""
    pairs = [
        ("reranker, default parameters", "reranker without graph features, default parameters"),
        ("reranker, default parameters", "reranker without feedback features, default parameters"),
        (
            "reranker without feedback features, default parameters",
            "reranker without feedback or graph features, default parameters",
        ),
        ("reranker, default parameters", "keyword feedback (RM3) + DBSF"),
    ]
    out = []
    for a, b in pairs:
        if a in scores and b in scores:
            p = paired_p(scores[a], scores[b])
            wins = sum(1 for q in scores[a] if scores[a][q] > scores[b].get(q, 0) + 1e-12)
            losses = sum(1 for q in scores[a] if scores[a][q] < scores[b].get(q, 0) - 1e-12)
            out.append(
                {
                    "a": a,
                    "b": b,
                    "a_ndcg10": round(mean(scores[a]), 4),
                    "b_ndcg10": round(mean(scores[b]), 4),
                    "p": None if p is None else round(p, 4),
                    "wins_losses": f"{wins}/{losses}",
                }
            )
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"**{result['collection']}**, {result['queries']} queries, {result['scored']} "
        f"({result['scored_queries']} scored), depth {result['candidates']}",
        "",
        f"| option | nDCG@10 | p vs RRF | p vs {result['best_single_signal']} | "
        "wins/losses vs RRF | latency / RRF |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in result["rows"]:
        p = "—" if row["p_vs_rrf"] is None else f"{row['p_vs_rrf']:.4f}"
        single = "—" if row["p_vs_best_single"] is None else f"{row['p_vs_best_single']:.4f}"
        ratio = "—" if row["latency_ratio"] is None else f"{row['latency_ratio']:.2f}"
        lines.append(
            f"| {row['option']} | {row['ndcg10']:.4f} | {p} | {single} | {row['wins_losses']} "
            f"| {ratio} |"
        )
    lines += [
        "",
        f"Tuned fusion per fold: {result['tuned_choices']}",
        f"Reranker parameters per fold: {result['reranker_params_per_fold']}",
        f"Feature importance (gain share): {result['feature_importance']}",
        *[
            f"paired: {pair['a']} {pair['a_ndcg10']:.4f} vs {pair['b']} {pair['b_ndcg10']:.4f}: "
            f"p = {pair['p']}, wins/losses {pair['wins_losses']}"
            for pair in result["reranker_pairs"]
        ],
        f"ms per query: {result['ms_per_query']}; seconds: {result['seconds']}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
