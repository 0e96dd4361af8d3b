"""Emoji retrieval quality: text → image (tags) and image → image (across artists).

Builds the emoji benchmark (Noto catalog, Twemoji image queries), ingests all 3,786
images with their names (MiniLM for names, the ``visual`` descriptor for images),
and evaluates the built-in configurations on the test half of each query set.

Usage::

    python benchmarks/emoji_eval.py --source ../shared/datasets/emoji --out /tmp/emoji
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from cranfield_eval import markdown_table

from mmsearch.config import Settings
from mmsearch.datasets.emoji import build_emoji
from mmsearch.evaluation.experiment import run_evaluation
from mmsearch.ingest import IngestOptions, Ingestor

DEFAULT_SOURCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "emoji"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE.resolve())
    parser.add_argument("--out", type=Path, default=Path("emoji-bench"))
    parser.add_argument("--split", choices=("dev", "test"), default="test")
    parser.add_argument("--limit", type=int, default=None, help="first N catalog images only")
    parser.add_argument("--image-encoder", default="visual")
    args = parser.parse_args()

    out: Path = args.out.resolve()
    stats = build_emoji(args.source, out / "data", limit=args.limit)
    settings = Settings(home=out / "workspace", image_encoder=args.image_encoder)
    tick = time.perf_counter()
    report = Ingestor(settings).run(IngestOptions(out / "data" / "catalog.jsonl", "emoji"))
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"{stats.items} images indexed ({report.counts['items']} items) in "
        f"{time.perf_counter() - tick:.0f} s; image encoder {args.image_encoder}"
    )
    summaries = {}
    for kind in ("text", "image"):
        queries = out / "data" / f"queries-{kind}-{args.split}.jsonl"
        tick = time.perf_counter()
        outcome = run_evaluation(
            settings, "emoji", queries, out / "data" / "qrels.txt", out=out / f"results-{kind}"
        )
        print(
            f"\n{kind} queries ({args.split} half): {len(outcome.evaluation.query_ids)} queries, "
            f"eval {time.perf_counter() - tick:.0f} s"
        )
        print(markdown_table(outcome.summary, outcome.evaluation.metrics))
        print(f"* = p < 0.05 vs {outcome.evaluation.baseline} (paired t-test)")
        summaries[kind] = outcome.summary
    (out / "summary.json").write_text(json.dumps(summaries, indent=2, default=str))


if __name__ == "__main__":
    main()
