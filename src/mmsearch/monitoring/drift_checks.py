"""The operator's drift check: which vectors to compare, and the last result kept.

``mmsearch drift`` and ``GET /v1/collections/{name}/drift`` both run
``check_collection``: a candidate build against live when one is named, and the
newest query embeddings (``QueryVectorLog``) against the queries logged just before
them (queries with queries, never with documents). Query vectors count only
when the build that answered them used live's very encoder (spec and version), so a
model change never shows up as "drift". Each check is written to
``<home>/logs/drift/<collection>.json``, which the admin page reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmsearch.clock import utc_now
from mmsearch.config import Settings
from mmsearch.errors import MMSearchError
from mmsearch.manifest import BuildManifest
from mmsearch.monitoring.drift import (
    DEFAULT_THRESHOLD,
    DriftResult,
    compare_builds,
    compare_query_windows,
)
from mmsearch.monitoring.query_vectors import QueryVectorLog
from mmsearch.workspace import CollectionDir, read_json, write_json_atomic

QUERY_WINDOW = 2_000


def recent_query_vectors(
    collection: CollectionDir,
    live_manifest: BuildManifest,
    query_log: QueryVectorLog,
    limit: int = QUERY_WINDOW,
) -> dict[str, np.ndarray]:
    """Per role of live: the newest logged query vectors made by live's very encoder
    (queries answered by an older build with the same spec and version count too)."""
    found = {}
    for role, encoder in sorted(live_manifest.encoders.items()):
        same = [live_manifest.build_id]
        for build_id in collection.build_ids():
            try:
                other = collection.manifest(build_id).encoders.get(role)
            except MMSearchError:
                continue
            if other is not None and (other.spec, other.version) == (
                encoder.spec,
                encoder.version,
            ):
                same.append(build_id)
        rows = query_log.recent(collection.name, role, limit, builds=set(same))
        if rows.shape[0]:
            found[role] = rows
    return found


def check_collection(
    collection: CollectionDir,
    settings: Settings,
    *,
    candidate: str | None = None,
    queries: bool = True,
    query_log: QueryVectorLog | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> list[DriftResult]:
    """What ``mmsearch drift`` and the API compute: candidate vs live, newest queries vs
    earlier queries; the results are also kept as the collection's last check (the admin
    page shows it)."""
    live = collection.live_manifest()
    results: list[DriftResult] = []
    if candidate is not None:
        results += compare_builds(
            collection, collection.manifest(candidate), live, settings, threshold=threshold
        )
    if queries:
        vectors = recent_query_vectors(collection, live, query_log or QueryVectorLog(settings.home))
        results += compare_query_windows(
            collection.name, live.build_id, vectors, threshold=threshold
        )
    save_results(settings.home, collection.name, live.build_id, results)
    return results


def _results_file(home: Path, collection: str) -> Path:
    return home / "logs" / "drift" / f"{collection}.json"


def save_results(home: Path, collection: str, live_build: str, results: list[DriftResult]) -> None:
    write_json_atomic(
        _results_file(home, collection),
        {
            "collection": collection,
            "live_build": live_build,
            "computed_at": utc_now(),
            "results": [r.as_dict() for r in results],
        },
    )


def last_results(home: Path) -> list[dict[str, Any]]:
    """Every collection's last drift check, by collection name."""
    folder = home / "logs" / "drift"
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            found.append(read_json(path))
        except MMSearchError:
            continue
    return found
