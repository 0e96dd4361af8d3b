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
from fastapi.middleware.cors import CORSMiddleware
from starlette.routing import Route

from mmsearch import __version__
from mmsearch.config import Settings
from mmsearch.monitoring.tracing import SearchTracer
from mmsearch.service.access import AccessControl
from mmsearch.service.errors import install_error_handlers
from mmsearch.service.guard import GuardMiddleware, default_hosts
from mmsearch.service.jobs import JobManager
from mmsearch.service.middleware import ServiceMiddleware
from mmsearch.service.moderating import ModerateBody, PolicyBody
from mmsearch.service.routers import (
    admin,
    builds,
    collections,
    drift,
    feedback,
    graph,
    health,
    jobs,
    lineage,
    moderation,
    review,
    search,
    session,
    ui,
)
from mmsearch.service.routers.admin import DefaultRulesBody, KeyCreateBody, RulesBody
from mmsearch.service.routers.builds import MANUAL_BODIES
from mmsearch.service.routers.session import LoginBody
from mmsearch.service.schemas import FeedbackBody, IngestBody, ItemBody, SearchBody
from mmsearch.service.state import ServiceState
from mmsearch.service.warmup import warm_in_background

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
TEMPLATES_DIR = HERE / "templates"


def create_app(settings: Settings, *, tracer: SearchTracer | None = None) -> FastAPI:
    """Build the app for a workspace. ``tracer`` lets tests capture spans in memory."""
    state = ServiceState(settings, tracer)
    job_manager = JobManager(state)
    access = AccessControl(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.warm_on_start:
            warm_in_background(state)
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
    app.state.access = access
    install_error_handlers(app)
    routers = [
        m.router
        for m in (
            search,
            collections,
            graph,
            builds,
            lineage,
            drift,
            jobs,
            feedback,
            moderation,
            review,
            admin,
            session,
            health,
            ui,
        )
    ]
    for router in routers:
        app.include_router(router)
    ui.mount_static(app, STATIC_DIR)
    # The guard matches requests against this flat list: FastAPI resolves included
    # routers lazily, so the app's own route list does not name their paths.
    app.state.routes = [
        *(route for router in routers for route in router.routes),
        *(route for route in app.router.routes if isinstance(route, Route)),
    ]
    if settings.cors_origins:  # off unless the operator names the origins
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["authorization", "content-type", "x-request-id"],
        )
    # Added first, so it runs inside the request-id/metrics middleware: refusals are counted.
    app.add_middleware(
        GuardMiddleware,
        access=access,
        routes=app.state.routes,
        allowed_hosts=settings.allowed_hosts or default_hosts(),
        allowed_origins=settings.allowed_origins,
        on_refusal=lambda caller, method, path, status, kind: state.audit_refusal(
            caller.key_id, method, path, status, kind
        ),
    )
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
        for model in (
            SearchBody,
            IngestBody,
            ItemBody,
            FeedbackBody,
            ModerateBody,
            PolicyBody,
            LoginBody,
            KeyCreateBody,
            RulesBody,
            DefaultRulesBody,
            *MANUAL_BODIES,
            *review.BODIES,
        ):
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(body.pop("$defs", {}))
            components[model.__name__] = body
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
