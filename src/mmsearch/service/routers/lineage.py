"""Lineage of an item (readers), the items of a source or run (admin), KPIs per build (admin).

Who sees server paths: only unrestricted callers (admin keys, the local operator).
Lineage names the catalog file, the image files and the store folder as the server
sees them; the admin-only build manifest (``/v1/collections/{name}/builds/{id}``)
already holds every one of them, so admins learn nothing new, while a reader's or a
writer's key (which may be limited to some collections and groups) should not map
the server's folders. Everyone else gets what identifies the record without them:
the catalog's file name, the row, the record and file sha256s, image paths relative
to the catalog's folder (or the configured roots), URLs as given. An item the caller
may not see answers 404, exactly like a missing one, and the reverse lookup and the
KPIs, which span every item and every caller's searches, are admin-only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request

from mmsearch.builds.lineage import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    RUN_ID,
    ItemNotFound,
    build_of_run,
    count_from,
    item_lineage,
    items_from,
    redact_paths,
)
from mmsearch.filters.expr import IsNull, all_of
from mmsearch.governance.roles import Permission
from mmsearch.index.base import BuildIndex
from mmsearch.index.open import open_build_index
from mmsearch.manifest import BuildManifest
from mmsearch.moderation.decisions import HIDDEN_COLUMN
from mmsearch.monitoring.kpis import DEFAULT_K, parse_moment, read_kpis
from mmsearch.service.access import Caller, request_caller
from mmsearch.service.errors import Forbidden, NotFound, error_responses
from mmsearch.service.schemas import CollectionName, ItemId
from mmsearch.service.state import ServiceState, state_of
from mmsearch.workspace import CollectionDir

router = APIRouter(tags=["lineage"])
READ_ERRORS = (401, 403, 404, 429)
BUILD_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
# A span back from now (24h) or an ISO date/time; parse_moment says what was wrong.
MOMENT = r"^[0-9][0-9A-Za-z:.+ -]{0,39}$"


def _build(
    state: ServiceState, name: str, build: str | None
) -> tuple[CollectionDir, BuildManifest, BuildIndex]:
    """The named build, else the live one (through the open searcher: no reopening)."""
    folder = state.workspace.collection(name)
    if build is None:
        searcher = state.searcher(name)
        return folder, searcher.manifest, searcher.index
    if build not in folder.build_ids():
        raise NotFound(f"No build '{build}' in collection '{name}'.")
    manifest = folder.manifest(build)
    return folder, manifest, open_build_index(folder, manifest, state.settings)


def _display_roots(state: ServiceState) -> list[Path]:
    return [*state.allowed_roots(), *state.settings.image_roots, state.uploads_dir]


def _admin(caller: Caller) -> bool:
    return caller.may(Permission.ADMIN)


@router.get(
    "/v1/collections/{name}/items/{item_id}/lineage",
    summary="Where an item came from: source row, run, images, encoders, build",
    responses=error_responses(400, *READ_ERRORS, 422),
)
def read_lineage(
    name: CollectionName,
    item_id: ItemId,
    request: Request,
    build: str | None = Query(
        default=None, pattern=BUILD_ID, description="another build than live (admin keys)"
    ),
) -> dict[str, Any]:
    state = state_of(request)
    caller = request_caller(request)
    if build is not None and not _admin(caller):
        raise Forbidden("Only admin keys may read the lineage of a build other than live.")
    folder, manifest, index = _build(state, name, build)
    # An item a policy hides is read through the review routes only.
    hidden = IsNull(HIDDEN_COLUMN) if HIDDEN_COLUMN in index.schema.names else None
    access = all_of(state.access_filter(caller, name), hidden)
    try:
        found = item_lineage(folder, manifest, state.settings, item_id, access=access, index=index)
    except ItemNotFound:
        raise NotFound(f"No item '{item_id}' in collection '{name}'.") from None
    return found if _admin(caller) else redact_paths(found, _display_roots(state))


@router.get(
    "/v1/collections/{name}/lineage",
    summary="The items read from a catalog file and/or written by an ingest run (admin keys)",
    responses=error_responses(400, *READ_ERRORS, 422),
)
def read_items_from(
    name: CollectionName,
    request: Request,
    source: str | None = Query(
        default=None,
        min_length=1,
        max_length=4096,
        description="catalog path as ingested, or its file name",
    ),
    run: str | None = Query(default=None, pattern=RUN_ID.pattern, description="ingest run id"),
    build: str | None = Query(
        default=None, pattern=BUILD_ID, description="build (default: the run's, else live)"
    ),
    limit: int = Query(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
) -> dict[str, Any]:
    state = state_of(request)
    if build is None and run is not None:
        folder = state.workspace.collection(name)
        build = build_of_run(folder, run)
        if build is None:
            raise NotFound(f"No ingest run '{run}' in collection '{name}'.")
    folder, manifest, index = _build(state, name, build)
    rows = items_from(
        folder, manifest, state.settings, source_file=source, run=run, limit=limit, index=index
    )
    total = count_from(folder, manifest, state.settings, source_file=source, run=run, index=index)
    return {"collection": name, "build_id": manifest.build_id, "total": total, "items": rows}


@router.get(
    "/v1/collections/{name}/kpis",
    summary="Per build: query volume, zero results, CTR@k, MRR, latency (admin keys)",
    responses=error_responses(400, *READ_ERRORS, 422),
)
def read_collection_kpis(
    name: CollectionName,
    request: Request,
    since: str | None = Query(
        default=None, pattern=MOMENT, description="ISO time (2026-11-30T00:00) or span ago (24h)"
    ),
    until: str | None = Query(default=None, pattern=MOMENT, description="end, not included"),
    k: int = Query(default=DEFAULT_K, ge=1, le=1000, description="cut-off of CTR@k"),
) -> dict[str, Any]:
    state = state_of(request)
    state.workspace.collection(name)  # 404 for an unknown collection, before reading logs
    start = parse_moment(since) if since else None
    end = parse_moment(until) if until else None
    report = read_kpis(state.settings.home, name, start, end, k).as_dict()
    report.pop("files")  # where the logs live is the server's business
    return {"collection": name, **report}
