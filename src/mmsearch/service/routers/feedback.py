"""``POST /v1/feedback``: a click on a search result, joined to the query that showed it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from mmsearch.errors import QueryError
from mmsearch.monitoring.querylog import ClickRecord
from mmsearch.service.access import request_caller
from mmsearch.service.errors import NotFound, error_responses
from mmsearch.service.requests import read_model
from mmsearch.service.schemas import FeedbackBody, json_body_doc
from mmsearch.service.state import ServiceState

router = APIRouter(tags=["feedback"])


@router.post(
    "/v1/feedback",
    status_code=201,
    summary="Record a click on a search result",
    openapi_extra=json_body_doc(FeedbackBody),
    responses=error_responses(400, 401, 403, 404, 413, 415, 422, 429),
)
async def feedback(request: Request) -> dict[str, Any]:
    state: ServiceState = request.app.state.mmsearch
    body = await read_model(request, FeedbackBody)
    caller = request_caller(request)
    query = state.query_log.recent(body.query_id)
    # A click counts only for the key that searched: no key can read or skew another's log.
    if query is not None and not caller.unrestricted and query.key_id != caller.key_id:
        query = None
    if query is not None and not caller.may_use(query.collection):
        query = None  # nor a collection-limited admin another collection's
    if query is None:
        raise NotFound(
            f"Unknown query id '{body.query_id}': feedback must follow a search on this server."
        )
    if body.item_id not in query.hit_ids:
        raise QueryError(f"Item '{body.item_id}' was not among the results of that query.")
    position = body.position or query.hit_ids.index(body.item_id) + 1
    record = ClickRecord(
        query=query.text,
        shown=query.hit_ids,
        clicked=body.item_id,
        where=query.filters,
        query_id=query.query_id,
        position=position,
        collection=query.collection,
        build_id=query.build_id,
    )
    path = state.click_log.append(record)
    state.metrics.clicks.labels(query.collection, query.build_id).inc()
    state.canaries.observe_click(query.collection, query.build_id, query.query_id)
    return {"recorded": True, "query_id": query.query_id, "clicked": body.item_id, "log": path.name}
