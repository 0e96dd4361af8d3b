"""Cranfield retrieval quality: BM25 vs MiniLM vs hybrid RRF on all 225 queries.

Builds the dataset from the shared Cranfield files, ingests the 1,400 abstracts with
the default encoders (MiniLM), evaluates the built-in configurations and prints a
Markdown table ready for docs/BENCHMARKS.md. Reports land in ``--out``.

``--hot`` evaluates the same build a second time with its searches answered by the
in-memory hot index (``index/hot``) and prints each metric's difference to the store's:
the keyword-parity check of the hot index's LanceDB-like analyzer.

Usage::

    python benchmarks/cranfield_eval.py --source ../shared/datasets/cranfield --out /tmp/cranfield
    python benchmarks/cranfield_eval.py --out /tmp/cranfield --hot
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from mmsearch.config import Settings
from mmsearch.datasets.cranfield import build_cranfield
from mmsearch.evaluation.experiment import run_evaluation
from mmsearch.evaluation.report import results_of
from mmsearch.ingest import IngestOptions, Ingestor

DEFAULT_SOURCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "cranfield"


def markdown_table(data: dict, metrics: list[str]) -> str:
    comparisons = data["significance"]["comparisons"]
    lines = [
        "| configuration | " + " | ".join(metrics) + " |",
        "| --- | " + " | ".join("---:" for _ in metrics) + " |",
    ]
    for name, values in results_of(data).items():
        cells = []
        for metric in metrics:
            mark = " *" if comparisons.get(name, {}).get(metric, {}).get("significant") else ""
            cells.append(f"{values[metric]:.4f}{mark}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def hot_differences(store: dict, hot: dict, metrics: list[str]) -> str:
    """Each configuration's metrics on the hot index less the store's (parity check)."""
    lines = [
        "| configuration | " + " | ".join(f"{m} hot - store" for m in metrics) + " |",
        "| --- | " + " | ".join("---:" for _ in metrics) + " |",
    ]
    before = results_of(store)
    for name, values in results_of(hot).items():
        cells = [f"{values[m] - before[name][m]:+.4f}" for m in metrics]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE.resolve())
    parser.add_argument("--out", type=Path, default=Path("cranfield-bench"))
    parser.add_argument("--split", choices=("all", "dev", "test"), default="all")
    parser.add_argument("--limit", type=int, default=None, help="first N queries only")
    parser.add_argument(
        "--hot", action="store_true", help="also evaluate on the hot index; print the differences"
    )
    args = parser.parse_args()

    out: Path = args.out.resolve()
    stats = build_cranfield(args.source, out / "data", limit_queries=args.limit)
    settings = Settings(home=out / "workspace")
    tick = time.perf_counter()
    report = Ingestor(settings).run(IngestOptions(out / "data" / "catalog.jsonl", "cranfield"))
    ingest_s = time.perf_counter() - tick
    queries = (
        out / "data" / ("queries.jsonl" if args.split == "all" else f"queries-{args.split}.jsonl")
    )
    tick = time.perf_counter()
    outcome = run_evaluation(
        settings, "cranfield", queries, out / "data" / "qrels.txt", out=out / "results"
    )
    eval_s = time.perf_counter() - tick
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"{stats.documents} documents, {len(outcome.evaluation.query_ids)} queries "
        f"({args.split}); ingest {ingest_s:.0f} s "
        f"({report.counts['items']} items), eval {eval_s:.0f} s"
    )
    print(markdown_table(outcome.summary, outcome.evaluation.metrics))
    print(f"\n* = p < 0.05 vs {outcome.evaluation.baseline} (paired t-test)")
    print(f"reports: {outcome.files['markdown']}")
    (out / "summary.json").write_text(json.dumps(outcome.summary, indent=2, default=str))
    if args.hot:
        hot = run_evaluation(
            settings.model_copy(update={"hot_index": True}),
            "cranfield",
            queries,
            out / "data" / "qrels.txt",
            out=out / "results-hot",
        )
        print("\nThe same build, searched from the hot index (index/hot):\n")
        print(markdown_table(hot.summary, hot.evaluation.metrics))
        print("\n" + hot_differences(outcome.summary, hot.summary, hot.evaluation.metrics))


if __name__ == "__main__":
    main()
