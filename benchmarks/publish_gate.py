"""Evaluation-gated publish on Cranfield: a worse build is refused, an equal one accepted.

Live is the full catalog (title + abstract) with MiniLM and BM25, searched hybrid (RRF).
Candidate A is the same 1,398 documents with the abstracts cut off (titles only): a
weaker build that a careless re-ingest could produce. Candidate B is a rebuild of the
live catalog. Both go through ``gated_publish`` with one gate: judged queries (all 225,
nDCG@10 and Recall@10 may drop by at most 0.02, and no significant drop at 0.05), a
canonical query, item counts and p95 latency, each against live. The script prints the
side-by-side tables, the verdicts and the gate's wall time.

Usage::

    python benchmarks/publish_gate.py            # full Cranfield: 1,398 documents, 225 queries
    python benchmarks/publish_gate.py --quick    # 30 queries, the 187 documents they judge + 50
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from mmsearch.builds.publishing import GateFailed, gated_publish
from mmsearch.commands.publish import print_report
from mmsearch.config import Settings
from mmsearch.datasets.cranfield import build_cranfield
from mmsearch.governance import lifecycle
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.terminal import console
from mmsearch.workspace import Workspace

DEFAULT_SOURCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "cranfield"
COLLECTION = "cranfield"


def titles_only(catalog: Path, out: Path) -> Path:
    """The same documents without their abstracts."""
    with catalog.open(encoding="utf-8") as source, out.open("w", encoding="utf-8") as target:
        for line in source:
            row = json.loads(line)
            row.pop("text", None)
            target.write(json.dumps(row) + "\n")
    return out


def write_gate(data: Path, catalog: Path) -> Path:
    first = json.loads(catalog.open(encoding="utf-8").readline())
    gate = data / "gate.toml"
    gate.write_text(
        '[judged]\nqueries = "queries.jsonl"\nqrels = "qrels.txt"\nk = 10\n'
        "max_ndcg_drop = 0.02\nmax_recall_drop = 0.02\nalpha = 0.05\n\n"
        f"[[canonical]]\nquery = {json.dumps(first['title'])}\nids = [{json.dumps(first['id'])}]\n"
        "k = 3\n\n[counts]\nmin_ratio = 0.95\nmax_ratio = 1.05\n\n"
        "[latency]\nmax_p95_ratio = 1.5\nrepeats = 2\nqueries = 100\n",
        encoding="utf-8",
    )
    return gate


def candidate(settings: Settings, catalog: Path) -> tuple[str, float]:
    """Ingest a new build, then point live back: a ready build that is not live."""
    folder = Workspace(settings.home).collection(COLLECTION)
    tick = time.perf_counter()
    build = Ingestor(settings).run(IngestOptions(catalog, COLLECTION, new_build=True)).build_id
    seconds = time.perf_counter() - tick
    assert build is not None
    lifecycle.rollback(folder, "benchmark", "candidate staged, not published")
    return build, seconds


def attempt(settings: Settings, label: str, build: str, gate: Path) -> dict[str, object]:
    tick = time.perf_counter()
    try:
        outcome = gated_publish(settings, COLLECTION, build, "benchmark", gate_path=gate)
        report, published = outcome.report, True
    except GateFailed as refused:
        report, published = refused.report, False
    wall = time.perf_counter() - tick
    assert report is not None
    print(f"\n## candidate {label}: {build}")
    print_report(report)
    print(
        f"published: {published}; gate_publish wall time {wall:.1f} s; timings {report.timings_s}"
    )
    return {"label": label, "published": published, "verdict": report.verdict, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE.resolve())
    parser.add_argument("--quick", action="store_true", help="30 queries, 237 documents")
    parser.add_argument("--work", type=Path, default=None, help="folder kept after the run")
    args = parser.parse_args()
    console.width = max(console.width, 120)  # the side-by-side table, unwrapped in logs

    with tempfile.TemporaryDirectory(prefix="mmsearch-gate-") as temporary:
        work = (args.work or Path(temporary)).resolve()
        data = work / "data"
        limits = {"limit_queries": 30, "extra_documents": 50} if args.quick else {}
        stats = build_cranfield(args.source, data, **limits)
        catalog = data / "catalog.jsonl"
        settings = Settings(home=work / "workspace")  # MiniLM text encoder, hybrid RRF
        tick = time.perf_counter()
        Ingestor(settings).run(IngestOptions(catalog, COLLECTION))
        live_s = time.perf_counter() - tick
        weaker, weaker_s = candidate(settings, titles_only(catalog, data / "titles.jsonl"))
        rebuild, rebuild_s = candidate(settings, catalog)
        gate = write_gate(data, catalog)
        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
            f"{stats.documents} documents, {stats.queries} queries; ingest live {live_s:.0f} s, "
            f"A (titles only) {weaker_s:.0f} s, B (rebuild) {rebuild_s:.0f} s"
        )
        results = [
            attempt(settings, "A (titles only)", weaker, gate),
            attempt(settings, "B (rebuild)", rebuild, gate),
        ]
        folder = Workspace(settings.home).collection(COLLECTION)
        print(
            f"\nlive now: {folder.alias('live')} (B = {rebuild}); "
            f"previous {folder.alias('previous')}"
        )
        print(json.dumps(results))
        if [r["published"] for r in results] != [False, True]:
            raise SystemExit("unexpected verdicts: the gate should refuse A and accept B")


if __name__ == "__main__":
    main()
