"""What one running service holds: open searchers, caches, logs and metrics.

A ``Searcher`` is reused across requests (opening a table per query would dominate
latency) and replaced when the collection's live alias or its manifest changes, so an
ingest by the CLI or a rollback is picked up on the next request without a restart.

Writes take the collection's writer lock (``mmsearch.writer_lock``), which excludes
the CLI and the other workers of this service as well as this process's own threads.

Refusals are audited; anonymous ones are folded into one line per client address and
minute (``governance.audit.RefusalTally``), written at the latest when the service stops.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request

from mmsearch.builds.canary import CanaryMonitor
from mmsearch.builds.lifecycle import Route, protected_builds, route
from mmsearch.collection_state import CollectionState
from mmsearch.config import Settings
from mmsearch.errors import CollectionNotFound, MMSearchError
from mmsearch.filters.expr import Visible
from mmsearch.governance.audit import (
    ANONYMOUS_KEY_ID,
    AuditEvent,
    AuditLog,
    Outcome,
    RefusalTally,
)
from mmsearch.monitoring.metrics import CollectionInfo, ServiceMetrics
from mmsearch.monitoring.query_vectors import QueryVectorLog
from mmsearch.monitoring.querylog import ClickLog, QueryLog
from mmsearch.monitoring.tracing import SearchTracer
from mmsearch.retrieval.query_cache import QueryEmbeddingCache
from mmsearch.search.searcher import Searcher
from mmsearch.service.access import Caller
from mmsearch.service.errors import Forbidden
from mmsearch.service.middleware import client_var
from mmsearch.workspace import Workspace
from mmsearch.writer_lock import WriterInfo, collection_writer

log = logging.getLogger("mmsearch.service")


# The parts of collection.json that a Searcher reads when it opens: a change to any of
# them (``mmsearch ann``, ``mmsearch ranking-settings``) reopens it on the next request.
SEARCHER_STATE_FIELDS = frozenset({"ann", "ranking"})


def searcher_settings(state: CollectionState) -> str:
    """The collection settings an open searcher was made with, comparable as one string."""
    return state.model_dump_json(include=set(SEARCHER_STATE_FIELDS))


@dataclass
class _OpenSearcher:
    manifest_mtime_ns: int
    settings: str  # ``searcher_settings`` of the state it opened with
    searcher: Searcher


class ServiceState:
    def __init__(self, settings: Settings, tracer: SearchTracer | None = None):
        self.settings = settings
        self.workspace = Workspace(settings.home)
        self.query_cache = QueryEmbeddingCache(settings.query_cache_size)
        self.metrics = ServiceMetrics(self.query_cache, self.collection_infos)
        self.tracer = tracer or SearchTracer.from_setting(settings.tracing)
        logs = settings.home / "logs"
        self.query_log = QueryLog(
            logs / "queries.jsonl", settings.query_log_max_bytes, settings.query_log_backups
        )
        self.click_log = ClickLog(logs / "clicks.jsonl")
        self.audit_log = AuditLog(settings.home)
        self.refusals = RefusalTally(self._append_audit)
        self.canaries = CanaryMonitor()
        # Recent query embeddings per role: what ``drift`` compares with live's reference.
        self.query_vectors = QueryVectorLog(settings.home)
        self.uploads_dir = settings.home / "uploads"
        self.reports_dir = settings.home / "reports"
        self._searchers: dict[tuple[str, str], _OpenSearcher] = {}
        self._lock = threading.Lock()

    def route(self, collection: str, caller_key: str | None) -> tuple[Route, CollectionState]:
        """The build that answers this search (live or the canary), from one read of
        collection.json: a switch by the CLI or another worker shows on the next request."""
        state = self.workspace.collection(collection).state()
        return route(collection, state, caller_key), state

    def searcher(self, collection: str, build_id: str | None = None) -> Searcher:
        """The open searcher of one build (live by default), reopened when its manifest
        changed (an ingest or revert) or the collection's search settings did (ANN and
        ranking settings, changed by the CLI or another worker), and dropped once the
        build leaves live and canary."""
        folder = self.workspace.collection(collection)
        state = folder.state()
        settings = searcher_settings(state)
        if build_id is None:
            build_id = state.aliases.as_json().get("live")
            if build_id is None:
                raise MMSearchError(
                    f"Collection '{collection}' has no live build yet; ingest a catalog into "
                    "it first."
                )
        manifest = folder.build_dir(build_id) / "manifest.json"
        try:
            mtime = manifest.stat().st_mtime_ns
        except FileNotFoundError:
            raise MMSearchError(f"Build {build_id} of '{collection}' has no manifest.") from None
        with self._lock:
            current = self._searchers.get((collection, build_id))
            if (
                current is not None
                and current.manifest_mtime_ns == mtime
                and current.settings == settings
            ):
                return current.searcher
        # A hot index (index/hot) is built on a thread: the store answers meanwhile.
        searcher = Searcher(
            self.settings,
            collection,
            query_cache=self.query_cache,
            build_id=build_id,
            hot_in_background=True,
        )
        with self._lock:
            self._searchers[(collection, build_id)] = _OpenSearcher(mtime, settings, searcher)
            self._drop_unrouted(collection, folder.state(), keep=build_id)
        return searcher

    def _drop_unrouted(self, collection: str, state: CollectionState, keep: str) -> None:
        """Forget searchers of builds that no longer answer: a request still using one
        holds its own reference, so nothing in flight is cut off."""
        serving = protected_builds(state) | {keep}
        for key in [k for k in self._searchers if k[0] == collection and k[1] not in serving]:
            del self._searchers[key]

    def access_filter(
        self, caller: Caller, collection: str, searcher: Searcher | None = None
    ) -> Visible | None:
        """The access node for this caller's reads of this collection (None: sees all);
        ``searcher``: the one already routed to, so a search looks no second one up."""
        if caller.unrestricted:
            return None
        return (searcher or self.searcher(collection)).access_for(caller.groups)

    def forget(self, collection: str) -> None:
        with self._lock:
            for key in [k for k in self._searchers if k[0] == collection]:
                del self._searchers[key]

    def collection_folder(self, collection: str) -> Path:
        """The folder whose writer lock guards this collection, also before it exists: an
        ingest job that creates the collection must exclude other writers from the start."""
        try:
            return self.workspace.collection(collection).folder
        except CollectionNotFound:  # an invalid name raises before this, so no path escapes
            return self.workspace.collections_dir / collection

    def writer(
        self,
        collection: str,
        *,
        purpose: str,
        timeout_s: float | None = None,
        on_wait: Callable[[WriterInfo | None], None] | None = None,
    ) -> contextlib.AbstractContextManager[None]:
        """One writer per collection, across this service's threads and workers and the CLI:
        manifests are read-modify-written by each write."""
        return collection_writer(
            self.collection_folder(collection),
            purpose=f"mmsearch service: {purpose}",
            timeout_s=timeout_s,
            on_wait=on_wait,
        )

    def collection_infos(self) -> list[CollectionInfo]:
        infos = []
        for name in self.workspace.collection_names():
            try:
                folder = self.workspace.collection(name)
                live = folder.alias("live")
                if live is None:
                    continue
                manifest = folder.manifest(live)
            except (MMSearchError, OSError):
                continue
            items = manifest.counts.items
            infos.append(CollectionInfo(name, live, items))
        return infos

    def allowed_roots(self) -> list[Path]:
        """Server folders the API may read catalogs and images from: only those configured."""
        return [p.expanduser().resolve() for p in self.settings.allowed_roots]

    def check_allowed(self, path: Path, what: str) -> Path:
        """Resolve a server path; refuse anything outside the configured roots or in the
        workspace itself (its logs, keys and caches must never become a catalog)."""
        resolved = path.expanduser().resolve()
        home = self.settings.home.expanduser().resolve()
        inside_home = resolved == home or home in resolved.parents
        for root in self.allowed_roots():
            if not inside_home and (resolved == root or root in resolved.parents):
                return resolved
        raise Forbidden(
            f"The {what} '{path}' is not under a folder this server ingests from; "
            "the operator lists those folders in MMSEARCH_ALLOWED_ROOTS."
        )

    def audit(
        self,
        key_id: str,
        action: str,
        *,
        collection: str | None = None,
        items: list[str] | None = None,
        counts: dict[str, int] | None = None,
        outcome: Outcome = "ok",
        detail: str | None = None,
    ) -> None:
        """Append one line to the hash-chained audit trail; a failure to audit is logged."""
        try:
            event = AuditEvent(
                key_id=key_id,
                action=action,
                collection=collection,
                items=items,
                counts=counts,
                outcome=outcome,
                detail=detail,
            )
        except Exception:
            log.exception("audit event invalid", extra={"action": action})
            return
        self._append_audit(event)

    def _append_audit(self, event: AuditEvent) -> None:
        try:
            self.audit_log.append(event)
        except Exception:  # the trail must not take the service down; the log says why
            log.exception("audit append failed", extra={"action": event.action})

    def audit_refusal(
        self,
        key_id: str,
        method: str,
        path: str,
        status: int,
        kind: str,
        client: str | None = None,
    ) -> None:
        """Audit a refused request. A known key's refusal is a line of its own (it names
        who tried what); anonymous ones, which a scanner sends many times a second, are
        counted per client address (``client``, else the request's, which the service
        middleware keeps in ``client_var``) and written as one line a minute."""
        request = f"{method} {path} -> {status} {kind}"
        if key_id == ANONYMOUS_KEY_ID:
            self.refusals.refused(client or client_var.get() or "ip:unknown", request, status)
            return
        self.audit(key_id, "request.refused", outcome="refused", detail=request)

    def close(self) -> None:
        self.refusals.close()  # pending anonymous counts are written, not lost
        self.query_log.close()
        self.query_vectors.close()
        self.tracer.shutdown()
        self.metrics.close()


def state_of(request: Request) -> ServiceState:
    """The service's state, which ``create_app`` keeps on the app (every router's way in)."""
    state: ServiceState = request.app.state.mmsearch
    return state
