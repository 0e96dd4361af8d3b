"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from mmsearch.encoders.base import create_encoder
from mmsearch.service.state import ServiceState

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Every collection's encoders load and its store answers")
def readyz(request: Request) -> JSONResponse:
    """Ready only when a search could be answered: models created, table readable."""
    state: ServiceState = request.app.state.mmsearch
    collections: dict[str, Any] = {}
    ready = True
    for name in state.workspace.collection_names():
        try:
            searcher = state.searcher(name)
            for role, encoder in searcher.manifest["encoders"].items():
                create_encoder(encoder["spec"])
                collections.setdefault(name, {}).setdefault("encoders", {})[role] = "loaded"
            collections[name].update(
                {"build_id": searcher.build_id, "items": searcher.index.row_count()}
            )
        except Exception as exc:  # readiness reports any failure instead of raising it
            ready = False
            collections.setdefault(name, {})["error"] = str(exc)
    status = "ready" if ready else "not ready"
    return JSONResponse(
        {"status": status, "collections": collections}, status_code=200 if ready else 503
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    state: ServiceState = request.app.state.mmsearch
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
