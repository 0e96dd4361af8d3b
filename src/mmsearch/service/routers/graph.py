"""The entity graph over HTTP: entity names by prefix, one entity and its neighbours.

Same permission (``search``) and collection scope as search. Every figure is computed
over the items this caller may see (``graph/view.py``): an entity carried only by
items hidden from the caller is not listed, not found and not a neighbour, and counts,
shared items and PMI count visible items only, so no answer reveals a hidden item.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from mmsearch.graph.reports import GraphError, entities_report, entity_report, require_graph
from mmsearch.graph.view import GraphView, caller_view
from mmsearch.service.access import request_caller
from mmsearch.service.errors import NotFound, error_responses
from mmsearch.service.schemas import CollectionName
from mmsearch.service.state import state_of

router = APIRouter(tags=["graph"])
READ_ERRORS = (401, 403, 404, 429)
EntityName = Annotated[
    str, Path(min_length=1, max_length=300, description="field=value, or a value of any field")
]
Limit = Annotated[int, Query(ge=1, le=200, description="entities or neighbours to return")]


def _view(request: Request, name: str) -> GraphView:
    state = state_of(request)
    searcher = state.searcher(name)
    access = state.access_filter(request_caller(request), name, searcher)
    try:
        stored = require_graph(
            searcher.folder.build_dir(searcher.build_id), name, searcher.build_id
        )
    except GraphError as exc:
        raise NotFound(str(exc)) from None
    return caller_view(stored, searcher.index, searcher.visible_filter(access))


@router.get(
    "/v1/collections/{name}/entities",
    summary="Entities of the live build's graph whose value starts with a prefix",
    responses=error_responses(400, *READ_ERRORS),
)
def list_entities(
    name: CollectionName,
    request: Request,
    prefix: Annotated[str, Query(max_length=300)] = "",
    limit: Limit = 20,
) -> dict[str, Any]:
    return {"collection": name, **entities_report(_view(request, name), prefix, limit)}


@router.get(
    "/v1/collections/{name}/graph/{entity}",
    summary="One entity: items the caller may see, parents, children, co-occurring entities",
    responses=error_responses(400, *READ_ERRORS),
)
def entity_graph(
    name: CollectionName, entity: EntityName, request: Request, limit: Limit = 20
) -> dict[str, Any]:
    try:
        found = entity_report(_view(request, name), entity, limit)
    except GraphError as exc:
        raise NotFound(str(exc)) from None
    return {"collection": name, **found}
