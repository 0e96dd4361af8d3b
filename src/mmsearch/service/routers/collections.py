"""Collections, builds, filter facets, items (GET/PUT/DELETE), item images, "more like this"."""

from __future__ import annotations

import mimetypes
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from mmsearch.errors import MMSearchError
from mmsearch.media.images import read_image_bytes
from mmsearch.service.errors import NotFound
from mmsearch.service.facets import collection_facets
from mmsearch.service.items import delete_item, get_item, item_image_path, upsert_item
from mmsearch.service.schemas import ItemBody, SearchBody, SearchResponse
from mmsearch.service.searching import decode_query_image, image_limits, run_search
from mmsearch.service.state import ServiceState

router = APIRouter(tags=["collections"])
MAX_SIMILAR_TEXT = 2000


def _state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.mmsearch
    return state


def summary(state: ServiceState, name: str) -> dict[str, Any]:
    """What a client needs to know about a collection, without the run history."""
    folder = state.workspace.collection(name)
    aliases = folder.aliases()
    live = aliases.get("live")
    manifest = folder.manifest(live) if live else {}
    builds_dir = folder.folder / "builds"
    builds = sorted(p.name for p in builds_dir.iterdir()) if builds_dir.is_dir() else []
    return {
        "name": name,
        "aliases": aliases,
        "builds": builds,
        "live_build": live,
        "items": manifest.get("counts", {}).get("items", 0),
        "created_at": manifest.get("created_at"),
        "updated_at": manifest.get("updated_at"),
        "encoders": manifest.get("encoders", {}),
        "mapping": manifest.get("mapping", {}),
        "attributes": manifest.get("attributes", []),
        "table_version": manifest.get("table_version"),
        "errors": manifest.get("errors", {}),
    }


@router.get("/v1/collections", summary="List collections")
def list_collections(request: Request) -> dict[str, Any]:
    state = _state(request)
    out = []
    for name in state.workspace.collection_names():
        try:
            out.append(summary(state, name))
        except MMSearchError as exc:
            out.append({"name": name, "error": str(exc)})
    return {"collections": out}


@router.get("/v1/collections/{name}", summary="A collection's live build: manifest summary")
def get_collection(name: str, request: Request) -> dict[str, Any]:
    return summary(_state(request), name)


@router.get("/v1/collections/{name}/builds/{build_id}", summary="A build's full manifest")
def get_build(name: str, build_id: str, request: Request) -> dict[str, Any]:
    folder = _state(request).workspace.collection(name)
    if build_id not in (p.name for p in (folder.folder / "builds").iterdir()):
        raise NotFound(f"No build '{build_id}' in collection '{name}'.")
    return folder.manifest(build_id)


@router.get("/v1/collections/{name}/facets", summary="Filter controls from the attributes")
def get_facets(name: str, request: Request) -> dict[str, Any]:
    state = _state(request)
    folder = state.workspace.collection(name)
    manifest = folder.live_manifest()
    return {"collection": name, "facets": collection_facets(folder, manifest)}


@router.get("/v1/collections/{name}/items/{item_id}", summary="One item's stored fields")
def read_item(name: str, item_id: str, request: Request) -> dict[str, Any]:
    return get_item(_state(request), name, item_id)


@router.put("/v1/collections/{name}/items/{item_id}", summary="Insert or replace one item")
def put_item(name: str, item_id: str, body: ItemBody, request: Request) -> dict[str, Any]:
    return upsert_item(_state(request), name, item_id, body)


@router.delete("/v1/collections/{name}/items/{item_id}", summary="Delete one item")
def remove_item(name: str, item_id: str, request: Request) -> dict[str, Any]:
    return delete_item(_state(request), name, item_id)


@router.get(
    "/v1/collections/{name}/items/{item_id}/images/{n}",
    summary="An image file of an item",
    response_class=FileResponse,
)
def item_image(name: str, item_id: str, n: int, request: Request) -> FileResponse:
    path = item_image_path(_state(request), name, item_id, n)
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(
        path, media_type=media_type, headers={"Cache-Control": "public, max-age=3600"}
    )


@router.get(
    "/v1/collections/{name}/items/{item_id}/similar",
    response_model=SearchResponse,
    summary="More like this: by look (image vector) or by meaning (text vector)",
)
async def similar(
    name: str,
    item_id: str,
    request: Request,
    by: Literal["look", "meaning"] = "look",
    k: int = Query(default=10, ge=1, le=100),
) -> dict[str, Any]:
    state = _state(request)
    return await run_in_threadpool(_similar, state, name, item_id, by, k)


def _similar(state: ServiceState, name: str, item_id: str, by: str, k: int) -> dict[str, Any]:
    item = get_item(state, name, item_id)
    if by == "look":
        if not item.get("images"):
            raise NotFound(f"Item '{item_id}' has no image to compare by look.")
        path = item_image_path(state, name, item_id, 0)
        data = read_image_bytes(path, image_limits(state.settings))
        image = decode_query_image(data, str(path), state.settings)
        body = SearchBody(k=k + 1, mode="image")
        result = run_search(state, name, body, image)
    else:
        text = " ".join([item.get("title") or "", *item.get("texts", {}).values()]).strip()
        if not text:
            raise NotFound(f"Item '{item_id}' has no text to compare by meaning.")
        body = SearchBody(text=text[:MAX_SIMILAR_TEXT], k=k + 1, signals=["text_vector"])
        result = run_search(state, name, body, None)
    hits = [hit for hit in result["hits"] if hit["id"] != item_id][:k]
    for rank, hit in enumerate(hits, start=1):
        hit["rank"] = rank
    return {**result, "hits": hits, "k": k}
