"""What the service records about a search once it is answered: ``SearchObserver``.

The lookups that shape a search (registry names, the caller's access, canary routing)
happen before it runs, in ``service/searching.py``; everything that watches it happens
after, here, in one place: Prometheus metrics, the canary's rollback guards (which may
stop the canary), the recent query vectors for drift, the trace span and the query log.
Keeping the two apart means a new observation never touches how a search is answered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from mmsearch.builds.canary import CanaryGuards, Trip
from mmsearch.builds.lifecycle import Route, canary_of, stop_canary
from mmsearch.collection_state import CollectionState
from mmsearch.monitoring.logs import request_id_var
from mmsearch.monitoring.querylog import QueryRecord
from mmsearch.search.result import Hit, SearchResult
from mmsearch.service.access import Caller
from mmsearch.service.state import ServiceState

log = logging.getLogger("mmsearch.canary")


@dataclass(frozen=True)
class AnsweredSearch:
    """One answered search, as the observers need it."""

    query_id: str
    collection: str
    caller: Caller
    routed: Route
    collection_state: CollectionState
    result: SearchResult
    hits: list[Hit]  # the page returned (after offset and k)
    text: str | None
    has_image: bool
    where: str | None
    structured_filters: dict[str, Any] | None
    started_ns: int
    seconds: float


class SearchObserver:
    """Records an answered search everywhere it is watched from."""

    def __init__(self, state: ServiceState):
        self.state = state

    def observe(self, search: AnsweredSearch) -> None:
        state, result = self.state, search.result
        state.metrics.observe_search(
            search.collection,
            result.build_id,
            result.timings_ms,
            search.seconds,
            len(search.hits),
            len(result.warnings),
        )
        self._watch_canary(search)
        state.query_vectors.record(search.collection, result.build_id, result.query_vectors)
        state.tracer.record_search(
            started_ns=search.started_ns,
            ended_ns=search.started_ns + int(search.seconds * 1e9),
            timings_ms=result.timings_ms,
            attributes={
                "mmsearch.collection": search.collection,
                "mmsearch.build_id": result.build_id,
                "mmsearch.query_id": search.query_id,
                "mmsearch.hits": len(search.hits),
                "mmsearch.has_image": search.has_image,
            },
        )
        state.query_log.write(
            QueryRecord(
                query_id=search.query_id,
                collection=search.collection,
                build_id=result.build_id,
                text=search.text,
                has_image=search.has_image,
                filters=search.where,
                structured_filters=search.structured_filters,
                latency_ms=round(search.seconds * 1000.0, 3),
                hit_ids=[h.id for h in search.hits],
                request_id=request_id_var.get(),
                key_id=search.caller.key_id,
                routed="canary" if search.routed.canary else "live",
                fallback=bool(result.dropped_signals),
                encoder_failures=len(result.dropped_signals),
            )
        )

    def _watch_canary(self, search: AnsweredSearch) -> None:
        """Count the search for the canary's guards; stop the canary when one trips."""
        state, result, collection_state = self.state, search.result, search.collection_state
        canary = canary_of(collection_state)
        due = state.canaries.observe(
            search.collection,
            canary,
            result.build_id,
            seconds=search.seconds,
            hits=len(search.hits),
            fallback=bool(result.dropped_signals),
            encoder_failures=len(result.dropped_signals),
        )
        if not due or canary is None:
            return
        guards = CanaryGuards.of(collection_state)
        live = collection_state.aliases.live or ""
        trip = state.canaries.check(search.collection, canary, live, guards)
        if trip is not None:
            self._stop_tripped_canary(search.collection, canary.build_id, trip)

    def _stop_tripped_canary(self, collection: str, build_id: str, trip: Trip) -> None:
        state = self.state
        folder = state.workspace.collection(collection)
        event = stop_canary(
            folder, "guard", f"{trip.guard}: {trip.reason}", automatic=True, only_build=build_id
        )
        if event is None:  # another worker (or an operator) stopped it first
            return
        state.metrics.canary_stops.labels(collection, trip.guard).inc()
        log.warning(
            "canary stopped by its rollback guard",
            extra={"collection": collection, "build_id": build_id, "guard": trip.guard},
        )
        state.audit(
            "guard",
            "canary.auto_stop",
            collection=collection,
            detail=f"{build_id}: {trip.guard}: {trip.reason}",
        )
