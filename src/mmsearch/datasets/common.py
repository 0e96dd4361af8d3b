"""Shared pieces of the benchmark builders: JSONL writing and the dev/test split.

The split is a seeded hash of the query id, not a shuffle, so a query lands in the
same half whatever subset (``--limit``) or order it is built in, and tuning on
``dev`` never leaks into numbers reported on ``test``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mmsearch.evaluation.queries import EvalQuery, write_queries

SPLIT_SEED = "mmsearch-split-v1"
SPLITS = ("dev", "test")


def split_of(query_id: str, seed: str = SPLIT_SEED) -> str:
    """``dev`` or ``test``, about half each, stable for a given id and seed."""
    digest = hashlib.sha256(f"{seed}:{query_id}".encode()).digest()
    return SPLITS[digest[0] & 1]


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_split_queries(
    out: Path, queries: list[EvalQuery], prefix: str = "queries"
) -> dict[str, int]:
    """Write ``<prefix>.jsonl`` (all, with ``split``) and ``<prefix>-dev/test.jsonl``."""
    tagged = [
        EvalQuery(q.id, q.text, q.image, q.where, {**q.extra, "split": split_of(q.id)})
        for q in queries
    ]
    write_queries(out / f"{prefix}.jsonl", tagged)
    counts = {"all": len(tagged)}
    for split in SPLITS:
        part = [q for q in tagged if q.extra["split"] == split]
        write_queries(out / f"{prefix}-{split}.jsonl", part)
        counts[split] = len(part)
    return counts
