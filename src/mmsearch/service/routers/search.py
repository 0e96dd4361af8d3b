"""``POST /v1/collections/{name}/search``: JSON (image as base64) or multipart (image file)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from mmsearch.search.response import SearchResponse
from mmsearch.service.access import request_caller
from mmsearch.service.errors import PayloadTooLarge, UnsupportedMediaType, error_responses
from mmsearch.service.requests import is_image_upload, parse_json_object, read_json_object
from mmsearch.service.schemas import CollectionName, SearchBody, json_body_doc
from mmsearch.service.searching import (
    QueryImage,
    decode_base64_image,
    decode_query_image,
    run_search,
)
from mmsearch.service.state import ServiceState, state_of

router = APIRouter(tags=["search"])

_BODY_DOC = json_body_doc(
    SearchBody,
    multipart={
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "image": {"type": "string", "format": "binary"},
            "query": {
                "type": "string",
                "description": "the JSON search body, without the image",
                "contentMediaType": "application/json",
                "contentSchema": {"$ref": "#/components/schemas/SearchBody"},
            },
            "text": {"type": "string", "maxLength": 2000},
            "k": {"type": "integer", "minimum": 1, "maximum": 100},
        },
    },
)


@router.post(
    "/v1/collections/{name}/search",
    response_model=SearchResponse,
    openapi_extra=_BODY_DOC,
    summary="Search a collection by text, image or both",
    responses=error_responses(400, 401, 403, 404, 413, 415, 422, 429, 503),
)
async def search(name: CollectionName, request: Request) -> dict[str, Any]:
    state = state_of(request)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        body, image = await _from_form(request, state)
    elif content_type.startswith("application/json") or not content_type:
        body = SearchBody.model_validate(await read_json_object(request))
        image = None
        if body.image is not None:
            image = await run_in_threadpool(decode_base64_image, body.image, state.settings)
    else:
        raise UnsupportedMediaType(
            f"Send the search as application/json or multipart/form-data, not {content_type}."
        )
    caller = request_caller(request)
    return await run_in_threadpool(run_search, state, name, body, image, caller)


async def _from_form(request: Request, state: ServiceState) -> tuple[SearchBody, QueryImage | None]:
    form = await request.form(max_files=1, max_fields=20)
    fields: dict[str, Any] = {}
    raw = form.get("query")
    if isinstance(raw, str) and raw.strip():
        fields = parse_json_object(raw, "The 'query' form field")
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
        if not is_image_upload(upload):
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
