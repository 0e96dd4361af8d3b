"""How errors become HTTP responses: always ``{"error": {"type", "message"}}``.

User-caused problems are ``MMSearchError`` subclasses everywhere in mmsearch; this
module only decides their status code, so the library code stays HTTP-free.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from mmsearch.errors import (
    CatalogError,
    CollectionNotFound,
    EncoderError,
    ImageError,
    MMSearchError,
    QueryError,
)

log = logging.getLogger("mmsearch.service")


class NotFound(MMSearchError):
    """An item, image, job or query id that does not exist."""


class PayloadTooLarge(MMSearchError):
    """A request body or upload over the configured size cap."""


class UnsupportedMediaType(MMSearchError):
    """An upload that is not an image, or a body in a format the route does not take."""


class Forbidden(MMSearchError):
    """A server path outside the folders the service may read."""


class Conflict(MMSearchError):
    """A write that does not fit the live build (schema, encoders)."""


class NotReady(MMSearchError):
    """A model or the store cannot be used right now."""


def status_for(exc: MMSearchError) -> int:
    if isinstance(exc, NotFound | CollectionNotFound):
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
        return JSONResponse(error_body(type(exc).__name__, str(exc)), status_code=status_for(exc))

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
        return JSONResponse(error_body(kind, message), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return JSONResponse(
            error_body("InternalError", "An internal error occurred; see the server log."),
            status_code=500,
        )


def _describe(errors: list[object]) -> str:
    """Pydantic's error list as one sentence per problem, naming the field."""
    parts = []
    for error in errors:
        if not isinstance(error, dict):
            continue
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "The request is invalid."
