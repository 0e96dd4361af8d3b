"""``POST /v1/moderate``: images and/or text against the workspace's moderation policies.

JSON (images as base64) or multipart (image files under ``images``, the rest as a JSON
``request`` field). Nothing is ingested or stored; the answer is the decisions with
their evidence and the time per image (``service/moderating.py``).
"""

from __future__ import annotations

import pathlib
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from mmsearch.service.access import request_caller
from mmsearch.service.errors import PayloadTooLarge, UnsupportedMediaType, error_responses
from mmsearch.service.moderating import (
    MAX_IMAGES,
    ModerateBody,
    PolicyBody,
    decode_base64,
    install_policy,
    list_policies,
    run_moderation,
)
from mmsearch.service.requests import (
    is_image_upload,
    parse_json_object,
    read_json_object,
    read_model,
)
from mmsearch.service.schemas import json_body_doc
from mmsearch.service.state import state_of

router = APIRouter(tags=["moderation"])

_BODY_DOC = json_body_doc(
    ModerateBody,
    multipart={
        "type": "object",
        "properties": {
            "images": {
                "type": "array",
                "items": {"type": "string", "format": "binary"},
                "maxItems": MAX_IMAGES,
            },
            "request": {
                "type": "string",
                "description": "the JSON body (text, attributes, policies) without images",
            },
        },
    },
)
PolicyName = Annotated[
    str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="moderation policy name")
]


@router.post(
    "/v1/moderate",
    openapi_extra=_BODY_DOC,
    summary="Check images and text against moderation policies (nothing is stored)",
    responses=error_responses(400, 401, 403, 413, 415, 422, 429),
)
async def moderate_route(request: Request) -> dict[str, Any]:
    state = state_of(request)
    settings = state.settings
    content_type = request.headers.get("content-type", "")
    images: list[tuple[str, bytes]] = []
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=MAX_IMAGES + 1, max_fields=10)
        raw = form.get("request")
        fields = parse_json_object(raw, "The 'request' form field") if isinstance(raw, str) else {}
        body = ModerateBody.model_validate(fields)
        uploads = [u for u in form.getlist("images") if isinstance(u, UploadFile)]
        if len(uploads) > MAX_IMAGES:
            raise PayloadTooLarge(f"At most {MAX_IMAGES} images per request.")
        for position, upload in enumerate(uploads):
            if not is_image_upload(upload):
                raise UnsupportedMediaType(
                    f"Upload {position} is {upload.content_type}, not an image."
                )
            data = await upload.read(settings.max_image_bytes + 1)
            if len(data) > settings.max_image_bytes:
                raise PayloadTooLarge(
                    f"Image {upload.filename or position} is over the limit of "
                    f"{settings.max_image_bytes} bytes."
                )
            images.append((upload.filename or f"image {position}", data))
    elif content_type.startswith("application/json") or not content_type:
        body = ModerateBody.model_validate(await read_json_object(request))
        for position, image in enumerate(body.images):
            name = image.name or f"image {position}"
            images.append(
                (name, decode_base64(image.data, settings.max_image_bytes, f"Image {name}"))
            )
    else:
        raise UnsupportedMediaType(
            f"Send application/json or multipart/form-data, not {content_type}."
        )
    return await run_in_threadpool(
        run_moderation, settings, images, dict(body.text), body.attributes, body.policies
    )


@router.get(
    "/v1/admin/policies",
    summary="Installed moderation policies with their versions",
    responses=error_responses(401, 403, 429),
)
def get_policies(request: Request) -> dict[str, Any]:
    return {"policies": list_policies(state_of(request).settings)}


@router.put(
    "/v1/admin/policies/{policy_name}",
    summary="Install a moderation policy (TOML/YAML text) as its next version",
    openapi_extra=json_body_doc(PolicyBody),
    responses=error_responses(400, 401, 403, 413, 422, 429),
)
async def put_policy(policy_name: PolicyName, request: Request) -> dict[str, Any]:
    """Banned-image folders must be absolute and under the server's allowed roots: a
    policy must not make the server read (and report on) files it would not ingest."""
    state = state_of(request)
    body = await read_model(request, PolicyBody)

    def check(folder: pathlib.Path) -> pathlib.Path:
        return state.check_allowed(folder, "banned-image folder")

    result = await run_in_threadpool(install_policy, state.settings, policy_name, body, check)
    state.audit(
        request_caller(request).key_id, "policy.add", detail=f"{policy_name} v{result['version']}"
    )
    return result
