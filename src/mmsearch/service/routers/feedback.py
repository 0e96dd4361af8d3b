"""``POST /v1/feedback``: a click on a search result, joined to the query that showed it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from mmsearch.errors import QueryError
from mmsearch.monitoring.querylog import ClickRecord
from mmsearch.service.errors import NotFound
from mmsearch.service.schemas import FeedbackBody
from mmsearch.service.state import ServiceState

router = APIRouter(tags=["feedback"])


@router.post("/v1/feedback", status_code=201, summary="Record a click on a search result")
def feedback(body: FeedbackBody, request: Request) -> dict[str, Any]:
    state: ServiceState = request.app.state.mmsearch
    query = state.query_log.recent(body.query_id)
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
    return {"recorded": True, "query_id": query.query_id, "clicked": body.item_id, "log": path.name}
