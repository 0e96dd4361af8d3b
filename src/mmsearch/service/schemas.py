"""Request and response bodies of the JSON API (pydantic, so /openapi.json documents them)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from mmsearch.search.query import MAX_RESULTS, Mode, SearchQuery
from mmsearch.workspace import COLLECTION_NAME

# Path parameters, constrained in the schema so that clients (and fuzzers) know the shape.
CollectionName = Annotated[
    str, Path(pattern=COLLECTION_NAME.pattern, description="collection name")
]
ItemId = Annotated[str, Path(min_length=1, max_length=512, description="item id")]
ImageIndex = Annotated[int, Path(ge=0, le=10_000, description="image position, from 0")]
RegistryName = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="registered name")
]
KeyId = Annotated[str, Path(pattern=r"^k_[0-9a-f]{10}$", description="API key id")]
BuildId = Annotated[
    str, Path(pattern=r"^build-[0-9A-Za-z_-]{1,80}$", description="a build id (build-...)")
]
JobId = Annotated[str, Path(min_length=1, max_length=100, description="ingest job id")]


class SearchBody(SearchQuery):
    """A search. Give ``text``, ``image`` (base64) or both."""

    # Everything a caller may ask for is ``SearchQuery`` (shared with the CLI and
    # evaluation); the API adds what only HTTP carries and narrows two bounds: one
    # response holds at most 100 hits (``offset`` pages further), and rerankers and
    # rules are registered names here, never server paths.
    image: str | None = Field(default=None, description="query image, base64 (data: URL allowed)")
    k: int = Field(default=10, ge=1, le=100)
    mode: Mode | None = Field(
        default=None, description="which parts of the query to use; default: all given"
    )
    reranker: str | None = Field(
        default=None, max_length=64, description="a registered reranker's name, or 'none'"
    )
    rules: str | None = Field(
        default=None,
        max_length=64,
        description="registered rules' name; 'none' (admin keys) switches the default off",
    )


class ImageUpload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: str = Field(description="image bytes, base64")
    filename: str | None = Field(default=None, max_length=200)


class ItemBody(BaseModel):
    """A catalog record as it would appear in a JSONL catalog, plus optional image uploads."""

    model_config = ConfigDict(extra="forbid")
    record: dict[str, Any]
    images: list[ImageUpload] = Field(default_factory=list, max_length=16)


class IngestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    catalog: str = Field(description="path on the server, under an allowed root")
    images_root: str | None = None
    mapping: dict[str, Any] | None = None
    new_build: bool = Field(
        default=False,
        description="build a new version (new fields or encoders); live switches when complete",
    )
    sync: bool = Field(default=False, description="remove items no longer in the catalog")
    strict: bool = Field(default=False, description="write nothing if any row fails")
    stage: bool = Field(
        default=False,
        description="write a candidate build and leave live as it is (publish it later)",
    )


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query_id: str = Field(max_length=100)
    item_id: str = Field(max_length=512)
    position: int | None = Field(default=None, ge=1, le=MAX_RESULTS)


def json_body_doc(
    model: type[BaseModel], multipart: dict[str, Any] | None = None
) -> dict[str, Any]:
    """OpenAPI ``requestBody`` for a route that reads its JSON body itself (so that a
    malformed body is a 400 from ``service/requests.py``, not FastAPI's parser), and
    the schema of its multipart form when it also takes uploads."""
    content: dict[str, Any] = {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
    }
    if multipart is not None:
        content["multipart/form-data"] = {"schema": multipart}
    return {"requestBody": {"required": True, "content": content}}
