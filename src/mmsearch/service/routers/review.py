"""Review routes: the moderation queue of a collection, one item, verdicts, apply, binding.

``GET /v1/collections/{name}/review`` lists decisions in a review state,
``GET .../review/{item_id}`` shows one with its evidence (``.../images/{n}`` its
images, hidden or not), ``POST .../review/{item_id}`` records ``approve`` or
``reject`` with a reason, ``POST .../moderation/apply`` re-judges the stored items
by the bound policy, and ``PUT /v1/admin/collections/{name}/policy`` binds one. The
work is in ``service/reviewing.py``; permissions in ``service/permissions.py``.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from mmsearch.service import reviewing
from mmsearch.service.access import request_caller
from mmsearch.service.errors import error_responses
from mmsearch.service.requests import read_model
from mmsearch.service.schemas import CollectionName, ImageIndex, ItemId, json_body_doc
from mmsearch.service.state import state_of

router = APIRouter(tags=["review"])
# Bodies these routes parse themselves: the app adds them to the OpenAPI schema.
BODIES = (reviewing.VerdictBody, reviewing.ApplyBody, reviewing.BindBody)
ReviewState = Literal["pending", "approved", "rejected", "all"]


@router.get(
    "/v1/collections/{name}/review",
    summary="The moderation review queue: items with a decision in a review state",
    responses=error_responses(401, 403, 404, 422, 429),
)
def review_queue(
    name: CollectionName,
    request: Request,
    state: Annotated[ReviewState, Query(description="review state, or all")] = "pending",
) -> dict[str, Any]:
    return reviewing.queue(
        state_of(request), name, request_caller(request), None if state == "all" else state
    )


@router.get(
    "/v1/collections/{name}/review/{item_id}",
    summary="An item under review: its fields, the decision, its evidence and past reviews",
    responses=error_responses(401, 403, 404, 429),
)
def review_show(name: CollectionName, item_id: ItemId, request: Request) -> dict[str, Any]:
    return reviewing.show(state_of(request), name, item_id, request_caller(request))


def _unstored_file(path: Path) -> FileResponse:
    """A file under review: never kept by a cache, since moderation may hide it."""
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-store"})


@router.get(
    "/v1/collections/{name}/review/{item_id}/images/{n}",
    summary="An image of an item under review (also when moderation hides the item)",
    response_class=FileResponse,
    responses=error_responses(401, 403, 404, 422, 429),
)
def review_image(
    name: CollectionName, item_id: ItemId, n: ImageIndex, request: Request
) -> FileResponse:
    return _unstored_file(
        reviewing.image_path(state_of(request), name, item_id, n, request_caller(request))
    )


@router.get(
    "/v1/collections/{name}/review/{item_id}/banned/{n}",
    summary="The banned image the item's n-th piece of evidence matched",
    response_class=FileResponse,
    responses=error_responses(401, 403, 404, 422, 429),
)
def review_banned_image(
    name: CollectionName, item_id: ItemId, n: ImageIndex, request: Request
) -> FileResponse:
    return _unstored_file(
        reviewing.banned_image_path(state_of(request), name, item_id, n, request_caller(request))
    )


@router.post(
    "/v1/collections/{name}/review/{item_id}",
    summary="Approve or reject an item's moderation decision, with a reason",
    openapi_extra=json_body_doc(reviewing.VerdictBody),
    responses=error_responses(400, 401, 403, 404, 409, 413, 415, 422, 429),
)
async def review_verdict(name: CollectionName, item_id: ItemId, request: Request) -> dict[str, Any]:
    body = await read_model(request, reviewing.VerdictBody)
    return await run_in_threadpool(
        reviewing.verdict, state_of(request), name, item_id, body, request_caller(request)
    )


@router.post(
    "/v1/collections/{name}/moderation/apply",
    summary="Judge the stored items again by the collection's policy; what changed",
    openapi_extra=json_body_doc(reviewing.ApplyBody),
    responses=error_responses(400, 401, 403, 404, 409, 413, 415, 422, 429),
)
async def moderation_apply(name: CollectionName, request: Request) -> dict[str, Any]:
    body = await read_model(request, reviewing.ApplyBody)
    return await run_in_threadpool(
        reviewing.apply, state_of(request), name, body, request_caller(request)
    )


@router.put(
    "/v1/admin/collections/{name}/policy",
    summary="Bind an installed moderation policy to a collection (null: none)",
    openapi_extra=json_body_doc(reviewing.BindBody),
    responses=error_responses(400, 401, 403, 404, 413, 415, 422, 429),
)
async def bind_policy(name: CollectionName, request: Request) -> dict[str, Any]:
    body = await read_model(request, reviewing.BindBody)
    return await run_in_threadpool(
        reviewing.bind, state_of(request), name, body, request_caller(request)
    )
