"""Keyword field boosts (title vs text) on Cranfield under 5-fold query CV.

Why: the keyword signal scores the concatenated text; ``retrieval/field_boosts.py``
rescores its candidates with per-field boosts. Which boosts help is a question for
held-out queries: for each of 5 query folds the boost pair with the best mean nDCG@10
on the other 4 folds is chosen from a grid and scored on the held-out fold, so every
query gets one held-out nDCG@10; that is compared with the current keyword signal (no
boosts) and, fused with the text vectors by RRF, with plain RRF, by paired t-tests.
Fixed boosts (title=2, ...) are reported on all queries beside them.

Each query is retrieved once without boosts; the boosts are applied to those
candidates with the same function the retriever calls (``boosted``), so the grid costs
no second retrieval. The latency of a boosted keyword search (its row read and
rescoring) is measured as a ratio to the plain one in the same run.

Usage::

    python benchmarks/field_boosts_cv.py --home /tmp/rankq/home --data /tmp/rankq/cranfield
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from mmsearch.config import Settings
from mmsearch.evaluation.judgments import load_judgments
from mmsearch.evaluation.queries import load_queries
from mmsearch.ranking.fusion import FusionParams, fuse
from mmsearch.ranking.training import query_folds
from mmsearch.ranking.tuning import mean, paired_p, per_query_ndcg10
from mmsearch.retrieval.field_boosts import FIELD_COLUMNS, boosted
from mmsearch.retrieval.retrieve import RetrievalQuery
from mmsearch.search.searcher import Searcher

Run = dict[str, dict[str, float]]
TITLE_GRID = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
TEXT_GRID = (0.5, 1.0, 1.5, 2.0)


def keyword_run(lists: dict[str, Any], boosts: dict[str, float]) -> Run:
    run: Run = {}
    for qid, (text, matches, rows) in lists.items():
        ranked = boosted(text, matches, rows, boosts) if boosts else matches
        run[qid] = {m.id: float(len(ranked) - i) for i, m in enumerate(ranked)}
    return run


def rrf_run(lists: dict[str, Any], vectors: dict[str, Any], boosts: dict[str, float]) -> Run:
    run: Run = {}
    for qid, (text, matches, rows) in lists.items():
        ranked = boosted(text, matches, rows, boosts) if boosts else matches
        run[qid] = fuse("rrf", {"keyword": ranked, **vectors[qid]}, FusionParams()).scores
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--collection", default="cranfield")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--latency", type=int, default=40, help="queries timed")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    settings = Settings(home=args.home, text_encoder="minilm", image_encoder="visual")
    searcher = Searcher(settings, args.collection)
    mapping = searcher.manifest.mapping
    text_field = mapping.text[0] if mapping.text else "text"
    judgments = load_judgments(args.data / "qrels.txt")
    queries = [q for q in load_queries(args.data / "queries.jsonl") if judgments.get(q.id)]
    lists: dict[str, Any] = {}
    vectors: dict[str, Any] = {}
    for query in queries:
        r = searcher.retriever.retrieve(
            RetrievalQuery(text=query.text, image=None, depth=args.candidates, field_boosts={})
        )
        matches = r.ranked["keyword"]
        found = searcher.index.get_found(matches, ["id", *FIELD_COLUMNS])
        lists[query.id] = (query.text, matches, {row["id"]: row for row in found})
        vectors[query.id] = {s: m for s, m in r.ranked.items() if s != "keyword"}
    print(f"retrieved {len(lists)} queries", flush=True)

    grid = [
        {"title": t, text_field: x}
        for t, x in itertools.product(TITLE_GRID, TEXT_GRID)
        if (t, x) != (1.0, 1.0)
    ]
    per_grid = {json.dumps(b): per_query_ndcg10(keyword_run(lists, b), judgments) for b in grid}
    base = per_query_ndcg10(keyword_run(lists, {}), judgments)
    folds = query_folds(list(lists), 5, seed=13)
    held: dict[str, float] = {}
    chosen: list[str] = []
    for fold in folds:
        train = [q for q in lists if q not in set(fold)]
        options = {"{}": base, **per_grid}
        best = max(options, key=lambda b: float(np.mean([options[b][q] for q in train])))
        chosen.append(best)
        held.update({q: options[best][q] for q in fold if q in options[best]})
    rrf_base = per_query_ndcg10(rrf_run(lists, vectors, {}), judgments)
    rrf_held: dict[str, float] = {}
    for fold, best in zip(folds, chosen, strict=True):
        part = {q: lists[q] for q in fold}
        scores = per_query_ndcg10(rrf_run(part, vectors, json.loads(best)), judgments)
        rrf_held.update(scores)

    rows: list[dict[str, Any]] = []

    def row(name: str, values: dict[str, float], against: dict[str, float]) -> None:
        common = set(values) & set(against)
        wins = sum(values[q] > against[q] + 1e-12 for q in common)
        losses = sum(values[q] < against[q] - 1e-12 for q in common)
        rows.append(
            {
                "option": name,
                "ndcg10": round(mean(values), 4),
                "p": paired_p(values, against),
                "wins_losses": f"{wins}/{losses}",
            }
        )

    row("keyword, no boosts (current)", base, base)
    row("keyword, boosts chosen per fold (5-fold CV)", held, base)
    for fixed in ({"title": 2.0}, {"title": 3.0}, {"title": 0.5}):
        row(
            f"keyword, {', '.join(f'{k}={v:g}' for k, v in fixed.items())} (all queries)",
            per_query_ndcg10(keyword_run(lists, fixed), judgments),
            base,
        )
    row("RRF, keyword without boosts (current)", rrf_base, rrf_base)
    row("RRF, keyword with boosts chosen per fold", rrf_held, rrf_base)

    # Latency: the retriever's keyword search alone, plain and boosted, interleaved.
    timed = queries[: args.latency]
    boosts = json.loads(max(set(chosen), key=chosen.count)) or {"title": 2.0}
    cost: dict[str, list[float]] = {"plain": [], "boosted": []}
    for query, name in itertools.product(timed, ("plain", "boosted")):
        tick = time.perf_counter()
        searcher.retriever.retrieve(
            RetrievalQuery(
                text=query.text,
                image=None,
                depth=args.candidates,
                signals=["keyword"],
                field_boosts=boosts if name == "boosted" else {},
            )
        )
        cost[name].append((time.perf_counter() - tick) * 1000)
    plain_ms, boosted_ms = float(np.mean(cost["plain"])), float(np.mean(cost["boosted"]))

    print(f"{len(lists)} queries; folds chose: {', '.join(chosen)}")
    print("| option | nDCG@10 | p vs current | wins/losses |")
    print("| --- | ---: | ---: | ---: |")
    for r in rows:
        p = "—" if r["p"] is None else f"{r['p']:.3g}"
        print(f"| {r['option']} | {r['ndcg10']:.4f} | {p} | {r['wins_losses']} |")
    print(
        f"keyword search {plain_ms:.1f} ms plain, {boosted_ms:.1f} ms with {boosts} "
        f"({boosted_ms / plain_ms:.2f}x), {len(timed)} queries"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rows": rows,
                    "chosen": chosen,
                    "latency_ms": {"plain": plain_ms, "boosted": boosted_ms},
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
