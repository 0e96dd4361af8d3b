"""``POST /v1/collections/{name}/search``: JSON (image as base64) or multipart (image file)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from mmsearch.errors import QueryError
from mmsearch.service.errors import PayloadTooLarge, UnsupportedMediaType
from mmsearch.service.schemas import SearchBody, SearchResponse
from mmsearch.service.searching import (
    QueryImage,
    decode_base64_image,
    decode_query_image,
    run_search,
)
from mmsearch.service.state import ServiceState

router = APIRouter(tags=["search"])

_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SearchBody"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "image": {"type": "string", "format": "binary"},
                        "query": {
                            "type": "string",
                            "description": "the JSON search body, without the image",
                        },
                        "text": {"type": "string"},
                        "k": {"type": "integer"},
                    },
                }
            },
        },
    }
}
IMAGE_TYPES = ("image/", "application/octet-stream")


def _state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.mmsearch
    return state


@router.post(
    "/v1/collections/{name}/search",
    response_model=SearchResponse,
    openapi_extra=_BODY_DOC,
    summary="Search a collection by text, image or both",
)
async def search(name: str, request: Request) -> dict[str, Any]:
    state = _state(request)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        body, image = await _from_form(request, state)
    elif content_type.startswith("application/json") or not content_type:
        try:
            payload = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise QueryError("The request body is not valid JSON.") from None
        body = SearchBody.model_validate(payload)
        image = None
        if body.image is not None:
            image = await run_in_threadpool(decode_base64_image, body.image, state.settings)
    else:
        raise UnsupportedMediaType(
            f"Send the search as application/json or multipart/form-data, not {content_type}."
        )
    return await run_in_threadpool(run_search, state, name, body, image)


async def _from_form(request: Request, state: ServiceState) -> tuple[SearchBody, QueryImage | None]:
    form = await request.form(max_files=1, max_fields=20)
    fields: dict[str, Any] = {}
    raw = form.get("query")
    if isinstance(raw, str) and raw.strip():
        try:
            fields = json.loads(raw)
        except json.JSONDecodeError:
            raise QueryError("The 'query' form field is not valid JSON.") from None
        if not isinstance(fields, dict):
            raise QueryError("The 'query' form field must be a JSON object.")
    for key in ("text", "k", "offset", "where", "mode", "fusion"):
        value = form.get(key)
        if isinstance(value, str) and value != "":
            fields[key] = value
    if "explain" in form:
        fields["explain"] = str(form.get("explain")).lower() in {"1", "true", "on", "yes"}
    body = SearchBody.model_validate(fields)  # a ValidationError becomes a 422
    upload = form.get("image")
    image = None
    if isinstance(upload, UploadFile) and (upload.filename or upload.size):
        if not (upload.content_type or "application/octet-stream").startswith(IMAGE_TYPES):
            raise UnsupportedMediaType(
                f"The uploaded file is {upload.content_type}; upload an image."
            )
        limit = state.settings.max_image_bytes
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise PayloadTooLarge(f"The query image is over the limit of {limit} bytes.")
        source = f"uploaded image {upload.filename or ''}".strip()
        image = await run_in_threadpool(decode_query_image, data, source, state.settings)
    return body, image
