"""Builds over the API: list, gated publish, canary start, stop and status, guards,
promote, rollback.

Every route needs an admin key (``service/permissions.py``) and every switch is
appended to the audit trail with the acting key's id, besides the collection's own
switch log. A switch is one atomic rewrite of collection.json, so every worker of
every running service answers from the new build on its next request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from mmsearch.builds.canary import CanaryGuards
from mmsearch.builds.canary_report import canary_report
from mmsearch.builds.lifecycle import (
    SwitchEvent,
    SwitchRefused,
    rollback,
    start_canary,
    stop_canary,
)
from mmsearch.builds.listing import list_builds
from mmsearch.builds.publishing import GateFailed, PublishOutcome, gated_publish, promote
from mmsearch.service.access import request_caller
from mmsearch.service.errors import Conflict, error_responses
from mmsearch.service.requests import read_model
from mmsearch.service.schemas import BuildId, CollectionName, json_body_doc
from mmsearch.service.state import ServiceState, state_of

router = APIRouter(tags=["builds"])
Body = TypeVar("Body", bound=BaseModel)
SWITCH_ERRORS = (400, 401, 403, 404, 409, 413, 415, 422, 429)


class CanaryBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    build_id: str = Field(max_length=100)
    percent: float = Field(gt=0.0, le=100.0, description="share of searches the canary answers")


class ReasonBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, max_length=500)


class PublishBody(BaseModel):
    """A publish is gated by the collection's default gate; ``force`` overrides a failing
    gate and needs a ``reason``, recorded with the acting key."""

    model_config = ConfigDict(extra="forbid")
    force: bool = False
    reason: str | None = Field(default=None, max_length=500)


# Bodies these routes parse themselves: the app adds them to the OpenAPI schema.
MANUAL_BODIES: tuple[type[BaseModel], ...] = (CanaryBody, ReasonBody, PublishBody, CanaryGuards)


def _switched(state: ServiceState, request: Request, name: str, event: SwitchEvent) -> dict:
    key_id = request_caller(request).key_id
    state.audit(
        key_id,
        f"build.{event.action}",
        collection=name,
        detail=f"{event.build_id}: {event.reason or ''}".rstrip(": "),
    )
    return {"collection": name, **event.__dict__}


def _refused(exc: SwitchRefused) -> Conflict:
    return Conflict(str(exc))


async def _optional(request: Request, model: type[Body]) -> Body:
    """An optional body: a rollback in an emergency needs no JSON."""
    if not (await request.body()).strip():
        return model()
    return await read_model(request, model)


def _published(
    state: ServiceState, request: Request, name: str, run: Callable[[], PublishOutcome]
) -> dict[str, Any]:
    try:
        outcome = run()
    except GateFailed as exc:
        state.audit(
            request_caller(request).key_id,
            "build.publish",
            collection=name,
            outcome="refused",
            detail="; ".join(exc.reasons)[:500],
        )
        raise Conflict(str(exc)) from None
    except SwitchRefused as exc:
        raise _refused(exc) from None
    _switched(state, request, name, outcome.event)
    return outcome.as_dict()


@router.get(
    "/v1/collections/{name}/builds",
    summary="Every build: status (live, canary, previous, candidate, retired), encoders, "
    "counts, gate verdict",
    responses=error_responses(400, 401, 403, 404, 429),
)
def get_builds(name: CollectionName, request: Request) -> dict[str, Any]:
    folder = state_of(request).workspace.collection(name)
    return {"collection": name, "builds": [b.as_dict() for b in list_builds(folder)]}


@router.post(
    "/v1/collections/{name}/builds/{build_id}/publish",
    summary="Make a build live if it passes the collection's gate (force: past it, with why)",
    openapi_extra=json_body_doc(PublishBody),
    responses=error_responses(*SWITCH_ERRORS, 503),
)
async def post_publish(name: CollectionName, build_id: BuildId, request: Request) -> dict:
    state = state_of(request)
    body = await _optional(request, PublishBody)
    actor = request_caller(request).key_id

    def run() -> PublishOutcome:
        return gated_publish(
            state.settings, name, build_id, actor, force=body.force, reason=body.reason
        )

    return await run_in_threadpool(_published, state, request, name, run)


@router.post(
    "/v1/collections/{name}/promote",
    summary="Make the canary live, through the collection's gate",
    openapi_extra=json_body_doc(PublishBody),
    responses=error_responses(*SWITCH_ERRORS, 503),
)
async def post_promote(name: CollectionName, request: Request) -> dict:
    state = state_of(request)
    body = await _optional(request, PublishBody)
    actor = request_caller(request).key_id

    def run() -> PublishOutcome:
        return promote(state.settings, name, actor, force=body.force, reason=body.reason)

    return await run_in_threadpool(_published, state, request, name, run)


@router.get(
    "/v1/collections/{name}/canary",
    summary="The canary beside live: share, guards, per-build figures, recent switches",
    responses=error_responses(400, 401, 403, 404, 429),
)
def canary_status(name: CollectionName, request: Request) -> dict[str, Any]:
    """Both builds' figures since the canary started, from the logs (every worker), and
    this worker's live counts, which its rollback guards judge."""
    state = state_of(request)
    folder = state.workspace.collection(name)
    report = canary_report(state.settings.home, folder)
    report["this_worker"] = state.canaries.snapshot(name) if report["canary"] else {}
    return report


@router.put(
    "/v1/collections/{name}/canary",
    summary="Start (or change) a canary: a share of searches answered by another build",
    openapi_extra=json_body_doc(CanaryBody),
    responses=error_responses(*SWITCH_ERRORS),
)
async def put_canary(name: CollectionName, request: Request) -> dict[str, Any]:
    state = state_of(request)
    body = await read_model(request, CanaryBody)
    folder = state.workspace.collection(name)
    try:
        event = start_canary(folder, body.build_id, body.percent, request_caller(request).key_id)
    except SwitchRefused as exc:
        raise _refused(exc) from None
    return _switched(state, request, name, event)


@router.delete(
    "/v1/collections/{name}/canary",
    summary="Stop the canary: every search goes to live again",
    responses=error_responses(400, 401, 403, 404, 429),
)
def delete_canary(name: CollectionName, request: Request) -> dict[str, Any]:
    state = state_of(request)
    folder = state.workspace.collection(name)
    event = stop_canary(folder, request_caller(request).key_id, "stopped over the API")
    if event is None:
        return {"collection": name, "action": "none", "detail": "no canary was running"}
    return _switched(state, request, name, event)


@router.put(
    "/v1/collections/{name}/canary/guards",
    summary="Set the rollback guards that switch a failing canary off",
    openapi_extra=json_body_doc(CanaryGuards),
    responses=error_responses(*SWITCH_ERRORS),
)
async def put_guards(name: CollectionName, request: Request) -> dict[str, Any]:
    state = state_of(request)
    guards = await read_model(request, CanaryGuards)
    folder = state.workspace.collection(name)
    guards.store(folder)
    state.audit(
        request_caller(request).key_id,
        "build.canary_guards",
        collection=name,
        detail=guards.model_dump_json(),
    )
    return {"collection": name, "guards": guards.model_dump()}


@router.post(
    "/v1/collections/{name}/rollback",
    summary="Point live back at the previous build at once",
    openapi_extra=json_body_doc(ReasonBody),
    responses=error_responses(*SWITCH_ERRORS),
)
async def post_rollback(name: CollectionName, request: Request) -> dict[str, Any]:
    state = state_of(request)
    body = await _optional(request, ReasonBody)
    folder = state.workspace.collection(name)
    try:
        event = rollback(folder, request_caller(request).key_id, body.reason)
    except SwitchRefused as exc:
        raise _refused(exc) from None
    return _switched(state, request, name, event)
