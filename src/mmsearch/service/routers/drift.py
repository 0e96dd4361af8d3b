"""Embedding drift over the API: a candidate build against live, newest queries against
earlier queries.

Admin only (``service/permissions.py``): a check may compute a build's reference
statistics first (one scan of its vectors), which is not for every caller to trigger.
Each check sets the ``mmsearch_drift_score`` / ``mmsearch_drift_p_value`` gauges of
this worker and is kept as the collection's last check for the admin page.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from mmsearch.monitoring.drift import DEFAULT_THRESHOLD
from mmsearch.monitoring.drift_checks import check_collection
from mmsearch.monitoring.query_vectors import QueryVectorLog
from mmsearch.service.errors import NotFound, error_responses
from mmsearch.service.schemas import CollectionName
from mmsearch.service.state import ServiceState

router = APIRouter(tags=["monitoring"])


@router.get(
    "/v1/collections/{name}/drift",
    summary="Embedding drift per encoder role: a candidate build and recent queries vs live",
    responses=error_responses(400, 401, 403, 404, 429),
)
def get_drift(
    name: CollectionName,
    request: Request,
    candidate: Annotated[
        str | None,
        Query(max_length=100, description="a build to compare with live (before publishing it)"),
    ] = None,
    queries: Annotated[
        bool, Query(description="compare the newest queries' embeddings with earlier ones'")
    ] = True,
    threshold: Annotated[
        float, Query(gt=0.0, lt=1.0, description="p-value below which a role has drifted")
    ] = DEFAULT_THRESHOLD,
) -> dict[str, Any]:
    state: ServiceState = request.app.state.mmsearch
    folder = state.workspace.collection(name)
    if candidate is not None and candidate not in folder.build_ids():
        raise NotFound(f"Collection '{name}' has no build '{candidate}'.")
    # The service's own log when it keeps one (its unwritten buffer included), else the
    # files every worker writes.
    query_log = getattr(state, "query_vectors", None)
    if not isinstance(query_log, QueryVectorLog):
        query_log = QueryVectorLog(state.settings.home)
    results = check_collection(
        folder,
        state.settings,
        candidate=candidate,
        queries=queries,
        query_log=query_log,
        threshold=threshold,
    )
    for result in results:
        if result.score is not None and result.p_value is not None:
            labels = (name, result.role, result.kind)
            state.metrics.drift_score.labels(*labels).set(result.score)
            state.metrics.drift_p_value.labels(*labels).set(result.p_value)
    return {
        "collection": name,
        "live_build": folder.alias("live"),
        "threshold": threshold,
        "drifted": any(r.drifted for r in results),
        "results": [r.as_dict() for r in results],
    }
