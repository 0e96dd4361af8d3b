"""Why two emoji baselines differ: the same queries scored through each benchmark's path.

``benchmarks/ranking_eval.py`` and ``benchmarks/graph_eval.py`` both report a test-half
nDCG@10 for "weighted fusion, z-score, keyword 0.1 / text_vector 0.9" on the first 600
emoji tag queries, and the figures differ (0.2753 and 0.3237 in docs/BENCHMARKS.md).
This script scores, on one collection and one query set, every difference between the
two paths separately:

- the offline path of ``ranking_eval.py``: ``Searcher.retrieve`` to depth 100, then
  ``fuse`` over the candidate lists (every fused candidate ranked);
- the online path of ``graph_eval.py``: ``Searcher.search`` with ``k=10``, graph off;
- the single signals and RRF, offline;
- the query set: the first N tag queries in file order, against the whole test half.

Usage (the collection of ``graph_eval.py``; any emoji collection works)::

    python benchmarks/emoji_baselines.py --home /tmp/ge/home --data /tmp/ge/data --limit 600
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mmsearch.config import Settings
from mmsearch.datasets.common import split_of
from mmsearch.evaluation.judgments import load_judgments
from mmsearch.evaluation.queries import load_queries
from mmsearch.ranking.fusion import FusionParams, fuse
from mmsearch.ranking.tuning import mean, paired_p, per_query_ndcg10, single_run
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher

WEIGHTS = {"keyword": 0.1, "text_vector": 0.9}


def score_paths(searcher: Searcher, queries: list[Any], judgments: Any) -> dict[str, Any]:
    lists: dict[str, Any] = {}
    online: dict[str, dict[str, float]] = {}
    for query in queries:
        request = SearchRequest(text=query.text, k=10, candidates=100, rules="none", graph=False)
        lists[query.id] = searcher.retrieve(request).ranked
        result = searcher.search(
            SearchRequest(
                text=query.text,
                k=10,
                candidates=100,
                graph=False,
                fusion="weighted",
                weights=WEIGHTS,
                normalisation="zscore",
            )
        )
        online[query.id] = {hit.id: hit.score for hit in result.hits}
    weighted = FusionParams(weights=WEIGHTS, normalisation="zscore")
    runs = {
        "keyword only (offline)": single_run(lists, "keyword"),
        "text_vector only (offline)": single_run(lists, "text_vector"),
        "RRF k=60 (offline)": {q: fuse("rrf", r, FusionParams()).scores for q, r in lists.items()},
        "weighted z-score 0.1/0.9 (offline, ranking_eval.py)": {
            q: fuse("weighted", r, weighted).scores for q, r in lists.items()
        },
        "weighted z-score 0.1/0.9 (Searcher.search k=10, graph_eval.py)": online,
    }
    scores = {name: per_query_ndcg10(run, judgments) for name, run in runs.items()}
    base = scores["weighted z-score 0.1/0.9 (offline, ranking_eval.py)"]
    return {
        "queries": len(queries),
        "rows": [
            {
                "path": name,
                "ndcg10": round(mean(per_query), 4),
                "p_vs_offline_weighted": None
                if per_query is base
                else (lambda p: None if p is None else round(p, 4))(paired_p(per_query, base)),
            }
            for name, per_query in scores.items()
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="the emoji dataset folder")
    parser.add_argument("--collection", default="emoji")
    parser.add_argument("--limit", type=int, default=600, help="first N tag queries")
    parser.add_argument("--all-test", action="store_true", help="also the whole test half")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    searcher = Searcher(Settings(home=args.home), args.collection)
    judgments = load_judgments(args.data / "qrels.txt")
    queries = load_queries(args.data / "queries-text.jsonl")
    out: dict[str, Any] = {
        f"first {args.limit}, test half": score_paths(
            searcher,
            [q for q in queries[: args.limit] if split_of(q.id) == "test"],
            judgments,
        )
    }
    if args.all_test:
        out["all queries, test half"] = score_paths(
            searcher, [q for q in queries if split_of(q.id) == "test"], judgments
        )
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
