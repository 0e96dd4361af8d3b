"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from mmsearch.governance.roles import Permission
from mmsearch.service.access import request_caller
from mmsearch.service.errors import error_responses
from mmsearch.service.state import ServiceState, state_of
from mmsearch.service.warmup import warm_collections

router = APIRouter(tags=["operations"])


# The id of the server.json that ``mmsearch serve`` wrote (settings.server_id): a CLI
# that found the file checks it here, so a process that took the port later is not used.
SERVER_ID_HEADER = "X-MMSearch-Server"


@router.get("/healthz", summary="The process is up")
def healthz(request: Request, response: Response) -> dict[str, str]:
    server_id = state_of(request).settings.server_id
    if server_id:
        response.headers[SERVER_ID_HEADER] = server_id
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Every collection's encoders load and its store answers",
    responses={503: {"description": "a collection's encoders or store cannot answer"}},
)
def readyz(request: Request) -> JSONResponse:
    """Ready only when a search could be answered: models created, table readable.

    A collection without a live build (new, or every row of its first ingest failed)
    has nothing to answer with, so it is reported as empty and does not make the
    service unready. Details per collection are shown only to callers who may list
    collections; anyone else (a load balancer) gets the status alone."""
    state: ServiceState = request.app.state.mmsearch
    caller = request_caller(request)
    ready, collections = warm_collections(state)
    status = "ready" if ready else "not ready"
    body: dict[str, Any] = {"status": status}
    if caller.may(Permission.READ_COLLECTIONS):
        body["collections"] = {
            name: info for name, info in collections.items() if caller.may_use(name)
        }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics (admin keys)",
    response_class=Response,
    responses=error_responses(401, 403, 429),
)
def metrics(request: Request) -> Response:
    state: ServiceState = request.app.state.mmsearch
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
