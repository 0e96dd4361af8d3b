"""The application factory: one ``ServiceState`` per app, routers per domain, UI assets local.

Nothing the pages need comes from a CDN: templates, CSS, JavaScript and the API
reference page are all served by the app, so the UI works on an air-gapped host.
FastAPI's default Swagger UI loads from a CDN, so ``/docs`` is replaced by a small
reference page that renders ``/openapi.json`` with local JavaScript.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from mmsearch import __version__
from mmsearch.config import Settings
from mmsearch.monitoring.tracing import SearchTracer
from mmsearch.service.errors import install_error_handlers
from mmsearch.service.jobs import JobManager
from mmsearch.service.middleware import ServiceMiddleware
from mmsearch.service.routers import collections, feedback, health, jobs, search, ui
from mmsearch.service.schemas import IngestBody, SearchBody
from mmsearch.service.state import ServiceState

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
TEMPLATES_DIR = HERE / "templates"


def create_app(settings: Settings, *, tracer: SearchTracer | None = None) -> FastAPI:
    """Build the app for a workspace. ``tracer`` lets tests capture spans in memory."""
    state = ServiceState(settings, tracer)
    job_manager = JobManager(state)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        job_manager.shutdown()
        state.close()

    app = FastAPI(
        title="mmsearch",
        version=__version__,
        description="Multimodal catalog search: text, image and keyword signals, fused.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.mmsearch = state
    app.state.jobs = job_manager
    install_error_handlers(app)
    for module in (search, collections, jobs, feedback, health, ui):
        app.include_router(module.router)
    ui.mount_static(app, STATIC_DIR)
    app.add_middleware(ServiceMiddleware, metrics=state.metrics, max_body=settings.max_upload_bytes)
    _document_manual_bodies(app)
    return app


def _document_manual_bodies(app: FastAPI) -> None:
    """Add the bodies of routes that parse JSON or multipart themselves to the schema."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (SearchBody, IngestBody):
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(body.pop("$defs", {}))
            components[model.__name__] = body
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
