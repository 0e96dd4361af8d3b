"""Reading request bodies that routes parse themselves, so a malformed body is a 400, not a 500.

JSON that does not decode (``\\x00``, truncated text, invalid UTF-8), JSON that is not
an object, and multipart fields that hold broken JSON all end here as ``QueryError``
with a message naming the part of the request at fault.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from mmsearch.errors import QueryError

Model = TypeVar("Model", bound=BaseModel)
# Content types an uploaded image may declare; a client that names none sends octets.
IMAGE_UPLOAD_TYPES = ("image/", "application/octet-stream")


def is_image_upload(upload: UploadFile) -> bool:
    """Whether an uploaded file declares an image (or no particular) content type."""
    return (upload.content_type or "application/octet-stream").startswith(IMAGE_UPLOAD_TYPES)


async def read_json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    return parse_json_object(raw, "The request body")


def parse_json_object(raw: bytes | str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise QueryError(f"{what} is not valid JSON.") from None
    if not isinstance(data, dict):
        raise QueryError(f"{what} must be a JSON object.")
    return data


async def read_model(request: Request, model: type[Model]) -> Model:
    """The JSON body validated against ``model``; a ValidationError becomes a 422."""
    return model.model_validate(await read_json_object(request))
