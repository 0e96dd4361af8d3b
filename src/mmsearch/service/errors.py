"""How errors become HTTP responses: always ``{"error": {"type", "message"}}``.

User-caused problems are ``MMSearchError`` subclasses everywhere in mmsearch; this
module only decides their status code, so the library code stays HTTP-free.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from mmsearch.errors import (
    CatalogError,
    CollectionNotFound,
    EncoderError,
    ImageError,
    MMSearchError,
    QueryError,
)
from mmsearch.governance.keys import UnknownKey
from mmsearch.governance.registry import NotRegistered

log = logging.getLogger("mmsearch.service")


class NotFound(MMSearchError):
    """An item, image, job or query id that does not exist."""


class PayloadTooLarge(MMSearchError):
    """A request body or upload over the configured size cap."""


class UnsupportedMediaType(MMSearchError):
    """An upload that is not an image, or a body in a format the route does not take."""


class Forbidden(MMSearchError):
    """A refusal the guard cannot make alone: a server path outside the folders the
    service may read, a key broader than its creator, another collection's events."""


class Conflict(MMSearchError):
    """A write that does not fit the live build (schema, encoders)."""


class WriterBusy(Conflict):
    """Another writer (an ingest, another item write) held the collection for as long as
    the request waited; the same request succeeds once it finishes. A type of its own so
    that clients can tell a write worth retrying from one that will never fit."""


class NotReady(MMSearchError):
    """A model or the store cannot be used right now."""


class Unauthorized(MMSearchError):
    """No valid API key or session."""


class TooManyRequests(MMSearchError):
    """The caller spent its request budget; ``retry_after`` seconds until the next token."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


class ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorBody(BaseModel):
    """Every error response: ``{"error": {"type", "message"}}``."""

    error: ErrorDetail


ERROR_DESCRIPTIONS = {
    400: "bad request: the query, filter, body or Host is not usable",
    401: "no valid API key or session",
    403: "the key's role or collections do not allow this, or the origin is not allowed",
    404: "no such collection, item, image, build, job or route (or not visible to this key)",
    405: "the route does not take this method",
    409: "the write does not fit the live build, or another writer holds the collection "
    "(type WriterBusy: retry when it finishes)",
    413: "the body, upload or image is over the size limit",
    415: "the body or upload has a media type this route does not take",
    422: "the body does not match the schema",
    429: "too many requests; see Retry-After",
    503: "a model or the store cannot answer right now",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI ``responses`` for the error statuses a route can return."""
    return {code: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[code]} for code in codes}


def status_for(exc: MMSearchError) -> int:
    if isinstance(exc, Unauthorized):
        return 401
    if isinstance(exc, TooManyRequests):
        return 429
    if isinstance(exc, NotFound | CollectionNotFound | UnknownKey | NotRegistered):
        return 404
    if isinstance(exc, PayloadTooLarge):
        return 413
    if isinstance(exc, UnsupportedMediaType):
        return 415
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, NotReady | EncoderError):
        return 503
    if isinstance(exc, ImageError):
        text = str(exc)
        if "over the limit" in text or "too large" in text:
            return 413
        if "not a recognised image format" in text:
            return 415
        return 400
    if isinstance(exc, QueryError | CatalogError):
        return 400
    return 400


def error_body(kind: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"type": kind, "message": message}}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MMSearchError)
    async def _mmsearch(request: Request, exc: MMSearchError) -> JSONResponse:
        headers = {}
        if isinstance(exc, TooManyRequests):
            headers["Retry-After"] = str(exc.retry_after)
        if isinstance(exc, Unauthorized):
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse(
            error_body(type(exc).__name__, str(exc)),
            status_code=status_for(exc),
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body("ValidationError", _describe(exc.errors())), status_code=422)

    @app.exception_handler(ValidationError)
    async def _invalid_model(request: Request, exc: ValidationError) -> JSONResponse:
        return JSONResponse(error_body("ValidationError", _describe(exc.errors())), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "NotFound" if exc.status_code == 404 else "HTTPError"
        message = str(exc.detail) if exc.detail else "error"
        if exc.status_code == 404 and message == "Not Found":
            message = f"No route {request.url.path}; see /docs for the API."
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Allow must name every method of the path, not one route's
            headers["Allow"] = ", ".join(allowed_methods(request))
        return JSONResponse(error_body(kind, message), status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return JSONResponse(
            error_body("InternalError", "An internal error occurred; see the server log."),
            status_code=500,
        )


def allowed_methods(request: Request) -> list[str]:
    """Methods some route serves at this path (each route object holds one method)."""
    from starlette.routing import Match

    found: set[str] = set()
    for route in getattr(request.app.state, "routes", []):
        for method in getattr(route, "methods", None) or ():
            if route.matches({**request.scope, "method": method})[0] == Match.FULL:
                found.add(method)
    return sorted(found)


def _describe(errors: Sequence[object]) -> str:
    """Pydantic's error list as one sentence per problem, naming the field."""
    parts = []
    for error in errors:
        if not isinstance(error, dict):
            continue
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "The request is invalid."
