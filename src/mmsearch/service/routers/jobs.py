"""Ingest jobs: start from a server path or an uploaded catalog file; poll their progress."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from mmsearch.catalog.mapping import FieldMapping
from mmsearch.errors import QueryError
from mmsearch.service.access import Caller, request_caller
from mmsearch.service.errors import NotFound, UnsupportedMediaType, error_responses
from mmsearch.service.jobs import Job, JobManager
from mmsearch.service.requests import parse_json_object, read_model
from mmsearch.service.schemas import CollectionName, IngestBody, JobId
from mmsearch.service.state import ServiceState
from mmsearch.workspace import check_collection_name, new_id

router = APIRouter(tags=["ingest"])
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
CATALOG_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet")

_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/IngestBody"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "mapping": {"type": "string", "description": "FieldMapping as JSON"},
                        "new_build": {"type": "boolean"},
                        "sync": {"type": "boolean"},
                        "strict": {"type": "boolean"},
                        "stage": {"type": "boolean"},
                    },
                }
            },
        },
    }
}


def _jobs(request: Request) -> JobManager:
    jobs: JobManager = request.app.state.jobs
    return jobs


@router.post(
    "/v1/collections/{name}/ingest",
    status_code=202,
    openapi_extra=_BODY_DOC,
    summary="Start a background ingest from a server path or an uploaded catalog",
    responses=error_responses(400, 401, 403, 413, 415, 422, 429),
)
async def start_ingest(name: CollectionName, request: Request) -> dict[str, Any]:
    check_collection_name(name)
    state: ServiceState = request.app.state.mmsearch
    jobs = _jobs(request)
    caller = request_caller(request)
    # A key bound by ACL groups writes only items it can see (ingest/write_access.py).
    writer_groups = None if caller.unrestricted else caller.groups
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=8)
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise QueryError("Attach the catalog as the 'file' form field.")
        filename = SAFE_NAME.sub("_", Path(upload.filename).name)
        if not filename.lower().endswith(CATALOG_SUFFIXES):
            raise UnsupportedMediaType(
                f"Upload a catalog file ({', '.join(CATALOG_SUFFIXES)}), not {upload.filename}."
            )
        job_id = new_id("job")
        folder = state.uploads_dir / "catalogs" / job_id
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / filename
        with target.open("wb") as handle:
            while chunk := await upload.read(1 << 20):
                handle.write(chunk)
        raw_mapping = form.get("mapping")
        mapping = _mapping(
            parse_json_object(raw_mapping, "The 'mapping' form field")
            if isinstance(raw_mapping, str) and raw_mapping
            else None
        )
        flags = {key: _flag(form.get(key), key) for key in ("new_build", "sync", "strict", "stage")}
        job = jobs.submit(
            name,
            target,
            mapping,
            None,
            job_id=job_id,
            key_id=caller.key_id,
            writer_groups=writer_groups,
            **flags,
        )
    else:
        body = await read_model(request, IngestBody)
        catalog = state.check_allowed(Path(body.catalog), "catalog")
        if not catalog.exists():
            raise QueryError(f"The catalog {catalog} does not exist on the server.")
        images_root = (
            state.check_allowed(Path(body.images_root), "images root") if body.images_root else None
        )
        job = jobs.submit(
            name,
            catalog,
            _mapping(body.mapping),
            images_root,
            key_id=caller.key_id,
            new_build=body.new_build,
            sync=body.sync,
            strict=body.strict,
            stage=body.stage,
            writer_groups=writer_groups,
        )
    return {**job.as_dict(), "url": f"/v1/jobs/{job.id}"}


def _flag(value: object, name: str) -> bool:
    """A true/false form field; anything else is a 400 naming it."""
    if value is None or value == "":
        return False
    if isinstance(value, str) and value.lower() in ("true", "1", "false", "0"):
        return value.lower() in ("true", "1")
    raise QueryError(f"The '{name}' form field must be true or false.")


def _mapping(data: dict[str, Any] | None) -> FieldMapping | None:
    if not data:
        return None
    try:
        return FieldMapping(**data)
    except (TypeError, ValidationError) as exc:
        raise QueryError(f"The mapping is invalid: {exc}") from None


@router.get(
    "/v1/jobs",
    summary="Ingest jobs, newest first (an admin: of its collections; else its own)",
    responses=error_responses(401, 403, 429),
)
def list_jobs(request: Request) -> dict[str, Any]:
    caller = request_caller(request)
    jobs = [job for job in _jobs(request).list() if _may_see(caller, job)]
    return {"jobs": [job.as_dict() for job in jobs]}


def _may_see(caller: Caller, job: Job) -> bool:
    """A job's report names rows and ids of what it wrote: a caller bound by ACL groups
    sees only the jobs it started itself; an admin every job of its collections."""
    if not caller.may_use(job.collection):
        return False
    return caller.unrestricted or job.key_id == caller.key_id


@router.get(
    "/v1/jobs/{job_id}",
    summary="One ingest job's status and progress",
    responses=error_responses(401, 403, 404, 429),
)
def get_job(job_id: JobId, request: Request) -> dict[str, Any]:
    job = _jobs(request).get(job_id)
    if not _may_see(request_caller(request), job):
        raise NotFound(f"No ingest job '{job_id}'.")
    return job.as_dict()
