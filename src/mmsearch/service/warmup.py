"""Load every collection's searcher and encoders: for /readyz, and at ``serve`` start.

A model loads in seconds to minutes on a small host. Loading it on the first search
makes that search (often a user's first CLI search that a running server answers) wait
for it, and the CLI gives up on a server after its timeout. ``mmsearch serve`` warms
in a background thread as it starts (``warm_on_start``), so the process answers
/healthz at once and searches find the models loaded.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from mmsearch.encoders.base import create_encoder
from mmsearch.service.state import ServiceState

log = logging.getLogger("mmsearch.service")


def warm_collections(state: ServiceState) -> tuple[bool, dict[str, dict[str, Any]]]:
    """Open each collection's live build and create its encoders; (ready, per collection).

    A collection without a live build (new, or every row of its first ingest failed)
    has nothing to answer with: it is reported as empty and does not make the service
    unready. Any other failure is reported, not raised."""
    collections: dict[str, dict[str, Any]] = {}
    ready = True
    for name in state.workspace.collection_names():
        try:
            if state.workspace.collection(name).alias("live") is None:
                collections[name] = {"status": "empty"}
                continue
            searcher = state.searcher(name)
            for role, encoder in searcher.manifest.encoders.items():
                create_encoder(encoder.spec)
                collections.setdefault(name, {}).setdefault("encoders", {})[role] = "loaded"
            collections[name].update(
                {"build_id": searcher.build_id, "items": searcher.index.row_count()}
            )
        except Exception as exc:  # readiness reports any failure instead of raising it
            ready = False
            collections.setdefault(name, {})["error"] = str(exc)
    return ready, collections


def warm_in_background(state: ServiceState) -> threading.Thread:
    """Start warming in a daemon thread (it must not hold up start-up or shutdown)."""

    def run() -> None:
        ready, collections = warm_collections(state)
        log.info(
            "models loaded for %d collection(s)%s",
            len(collections),
            "" if ready else "; some could not load (see /readyz)",
        )

    thread = threading.Thread(target=run, name="mmsearch-warmup", daemon=True)
    thread.start()
    return thread
