"""Collections, builds, filter facets, items (GET/PUT/DELETE), item images, "more like this"."""

from __future__ import annotations

import mimetypes
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from mmsearch.builds.gate_report import latest_gate_report
from mmsearch.builds.lifecycle import build_status
from mmsearch.errors import MMSearchError
from mmsearch.filters.expr import all_of
from mmsearch.manifest import BuildManifest, manifest_json
from mmsearch.media.images import read_image_bytes
from mmsearch.search.response import SearchResponse
from mmsearch.service.access import Caller, request_caller
from mmsearch.service.errors import NotFound, error_responses
from mmsearch.service.facets import collection_facets
from mmsearch.service.items import delete_item, get_item, item_image_path, upsert_item
from mmsearch.service.requests import read_model
from mmsearch.service.schemas import (
    CollectionName,
    ImageIndex,
    ItemBody,
    ItemId,
    SearchBody,
    json_body_doc,
)
from mmsearch.service.searching import decode_query_image, image_limits, run_search
from mmsearch.service.state import ServiceState, state_of

router = APIRouter(tags=["collections"])
MAX_SIMILAR_TEXT = 2000


def summary(state: ServiceState, name: str, caller: Caller) -> dict[str, Any]:
    """What a client needs to know about a collection, without the run history.

    The item count is what this caller may see: a total would reveal hidden items."""
    folder = state.workspace.collection(name)
    aliases = folder.aliases()
    live = aliases.get("live")
    manifest = folder.manifest(live) if live else None
    builds_dir = folder.folder / "builds"
    builds = sorted(p.name for p in builds_dir.iterdir()) if builds_dir.is_dir() else []
    items = manifest.counts.items if manifest else 0
    if live and (access := state.access_filter(caller, name)) is not None:
        items = state.searcher(name).index.count(access)
    return {
        "name": name,
        "aliases": aliases,
        "builds": builds,
        "live_build": live,
        "default_access": folder.default_access(state.settings.default_access),
        "items": items,
        **_build_summary(manifest),
    }


def _build_summary(manifest: BuildManifest | None) -> dict[str, Any]:
    """The live build's part of a collection summary, parts as the manifest stores them."""
    if manifest is None:  # no live build yet
        return {
            "created_at": None,
            "updated_at": None,
            "encoders": {},
            "mapping": {},
            "attributes": [],
            "table_version": None,
            "errors": {},
        }
    return {
        "created_at": manifest.created_at,
        "updated_at": manifest.updated_at,
        "encoders": manifest_json(manifest.encoders),
        "mapping": manifest_json(manifest.mapping),
        "attributes": manifest_json(manifest.attributes),
        "table_version": manifest.table_version,
        "errors": manifest_json(manifest.errors),
    }


READ_ERRORS = (401, 403, 404, 429)


@router.get(
    "/v1/collections",
    summary="List the collections this key may use",
    responses=error_responses(401, 403, 429),
)
def list_collections(request: Request) -> dict[str, Any]:
    state = state_of(request)
    caller = request_caller(request)
    out = []
    for name in state.workspace.collection_names():
        if not caller.may_use(name):
            continue
        try:
            out.append(summary(state, name, caller))
        except MMSearchError as exc:
            out.append({"name": name, "error": str(exc)})
    return {"collections": out}


@router.get(
    "/v1/collections/{name}",
    summary="A collection's live build: manifest summary",
    responses=error_responses(400, *READ_ERRORS),
)
def get_collection(name: CollectionName, request: Request) -> dict[str, Any]:
    return summary(state_of(request), name, request_caller(request))


@router.get(
    "/v1/collections/{name}/builds/{build_id}",
    summary="A build's full manifest (admin keys)",
    responses=error_responses(400, *READ_ERRORS),
)
def get_build(name: CollectionName, build_id: str, request: Request) -> dict[str, Any]:
    folder = state_of(request).workspace.collection(name)
    if build_id not in folder.build_ids():
        raise NotFound(f"No build '{build_id}' in collection '{name}'.")
    manifest = folder.manifest(build_id)
    report = latest_gate_report(folder, build_id)
    return {
        **manifest.as_json(),
        "status": build_status(folder.state(), manifest),
        "gate_report": report.as_dict() if report is not None else None,
    }


@router.get(
    "/v1/collections/{name}/facets",
    summary="Filter controls from the attributes (over the items this key may see)",
    responses=error_responses(400, *READ_ERRORS),
)
def get_facets(name: CollectionName, request: Request) -> dict[str, Any]:
    state = state_of(request)
    folder = state.workspace.collection(name)
    manifest = folder.live_manifest()
    searcher = state.searcher(name)
    # Counts over what search can return: hidden items would show in a facet's count.
    access = all_of(
        state.access_filter(request_caller(request), name), searcher.moderation_filter()
    )
    return {"collection": name, "facets": collection_facets(searcher.index, manifest, access)}


@router.get(
    "/v1/collections/{name}/items/{item_id}",
    summary="One item's stored fields",
    responses=error_responses(400, *READ_ERRORS),
)
def read_item(name: CollectionName, item_id: ItemId, request: Request) -> dict[str, Any]:
    return get_item(state_of(request), name, item_id, request_caller(request))


@router.put(
    "/v1/collections/{name}/items/{item_id}",
    summary="Insert or replace one item",
    openapi_extra=json_body_doc(ItemBody),
    responses=error_responses(400, *READ_ERRORS, 409, 413, 415, 422, 503),
)
async def put_item(name: CollectionName, item_id: ItemId, request: Request) -> dict[str, Any]:
    body = await read_model(request, ItemBody)
    caller = request_caller(request)
    return await run_in_threadpool(upsert_item, state_of(request), name, item_id, body, caller)


@router.delete(
    "/v1/collections/{name}/items/{item_id}",
    summary="Delete one item",
    responses=error_responses(400, *READ_ERRORS, 409),
)
def remove_item(name: CollectionName, item_id: ItemId, request: Request) -> dict[str, Any]:
    return delete_item(state_of(request), name, item_id, request_caller(request))


@router.get(
    "/v1/collections/{name}/items/{item_id}/images/{n}",
    summary="An image file of an item",
    response_class=FileResponse,
    responses=error_responses(400, *READ_ERRORS, 422),
)
def item_image(
    name: CollectionName, item_id: ItemId, n: ImageIndex, request: Request
) -> FileResponse:
    path = item_image_path(state_of(request), name, item_id, n, request_caller(request))
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(
        path, media_type=media_type, headers={"Cache-Control": "private, max-age=3600"}
    )


@router.get(
    "/v1/collections/{name}/items/{item_id}/similar",
    response_model=SearchResponse,
    summary="More like this: by look (image vector) or by meaning (text vector)",
    responses=error_responses(400, *READ_ERRORS, 422, 503),
)
async def similar(
    name: CollectionName,
    item_id: ItemId,
    request: Request,
    by: Literal["look", "meaning"] = "look",
    k: int = Query(default=10, ge=1, le=100),
    graph: bool | None = Query(
        default=None,
        description="walk the entity graph (same visual cluster, shared entities): "
        "true/false; default: the collection's routing setting",
    ),
    where: str | None = Query(default=None, max_length=2000, description="a filter on attributes"),
    explain: bool = False,
) -> dict[str, Any]:
    state = state_of(request)
    caller = request_caller(request)
    return await run_in_threadpool(
        _similar, state, name, item_id, by, k, caller, graph, where, explain
    )


def _one_more(body: SearchBody) -> SearchBody:
    """The same search for one hit more (the item itself is among the hits and is
    dropped), past the API's own bound on k: a caller's k=100 stays answerable."""
    return body.model_copy(update={"k": body.k + 1})


def _similar(
    state: ServiceState,
    name: str,
    item_id: str,
    by: str,
    k: int,
    caller: Caller,
    graph: bool | None = None,
    where: str | None = None,
    explain: bool = False,
) -> dict[str, Any]:
    """The item's vector neighbours, fused with its graph candidates where the build has
    a graph: every candidate passes the caller's whole filter inside the store."""
    item = get_item(state, name, item_id, caller)
    like: dict[str, Any] = {"like": item_id, "graph": graph, "where": where, "explain": explain}
    if by == "look":
        if not item.get("images"):
            raise NotFound(f"Item '{item_id}' has no image to compare by look.")
        path = item_image_path(state, name, item_id, 0, caller)
        data = read_image_bytes(path, image_limits(state.settings))
        image = decode_query_image(data, f"image 0 of item '{item_id}'", state.settings)
        body = _one_more(SearchBody(k=k, mode="image", **like))
        result = run_search(state, name, body, image, caller)
    else:
        text = " ".join([item.get("title") or "", *item.get("texts", {}).values()]).strip()
        if not text:
            raise NotFound(f"Item '{item_id}' has no text to compare by meaning.")
        body = _one_more(
            SearchBody(text=text[:MAX_SIMILAR_TEXT], k=k, signals=["text_vector"], **like)
        )
        result = run_search(state, name, body, None, caller)
    hits = [hit for hit in result["hits"] if hit["id"] != item_id][:k]
    for rank, hit in enumerate(hits, start=1):
        hit["rank"] = rank
    return {**result, "hits": hits, "k": k}
