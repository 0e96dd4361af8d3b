"""Admin API: keys, the rules/rankers registry, collection default rules, the audit trail.

Every route here needs an admin key (see ``service/permissions.py``); the registry and
the audit chain's check span collections, so they need an admin of every collection.
An admin limited to collections manages keys inside its scope only: it sees and revokes
keys limited to its collections, and creates none broader than itself (``Caller.
grant_problem``). Every change is appended to the audit trail with the acting key's id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from mmsearch.errors import QueryError
from mmsearch.governance.keys import KeyStore, UnknownKey, parse_duration
from mmsearch.governance.registry import Registry
from mmsearch.governance.roles import Role
from mmsearch.service.access import request_caller
from mmsearch.service.errors import Forbidden, error_responses
from mmsearch.service.requests import read_model
from mmsearch.service.schemas import CollectionName, KeyId, RegistryName, json_body_doc
from mmsearch.service.state import state_of

router = APIRouter(prefix="/v1/admin", tags=["admin"])
ADMIN_ERRORS = (401, 403, 429)
MAX_RULES_CHARS = 256 * 1024


class KeyCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["reader", "writer", "admin"]
    collections: list[str] | None = Field(default=None, min_length=1, max_length=100)
    groups: list[str] = Field(default_factory=list, max_length=64)
    expires: str | None = Field(
        default=None, pattern=r"^[1-9][0-9]{0,5}[mhdw]$", description="e.g. 30d, 12h, 90m, 1w"
    )
    name: str | None = Field(default=None, max_length=100)


class RulesBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=MAX_RULES_CHARS, description="the rules file's content")
    format: Literal["yaml", "toml"] = "yaml"


class DefaultRulesBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: str | None = Field(description="a registered rules name, or null for none")


def _keys(request: Request) -> KeyStore:
    keys: KeyStore = request.app.state.access.keys
    return keys


@router.get(
    "/keys", summary="API keys (never their secrets)", responses=error_responses(*ADMIN_ERRORS)
)
def list_keys(request: Request) -> dict[str, Any]:
    caller = request_caller(request)
    keys = [key for key in _keys(request).list() if caller.covers(key.collections)]
    return {"keys": [key.public_dict() for key in keys]}


@router.post(
    "/keys",
    status_code=201,
    summary="Create an API key; the secret is in this response only",
    openapi_extra=json_body_doc(KeyCreateBody),
    responses=error_responses(400, *ADMIN_ERRORS, 413, 415, 422),
)
async def create_key(request: Request) -> dict[str, Any]:
    body = await read_model(request, KeyCreateBody)
    caller = request_caller(request)
    problem = caller.grant_problem(Role(body.role), body.collections, body.groups)
    if problem is not None:
        raise Forbidden(problem)
    key, secret = _keys(request).create(
        body.role,
        collections=body.collections,
        groups=body.groups,
        expires_in=parse_duration(body.expires) if body.expires else None,
        name=body.name,
    )
    state_of(request).audit(
        request_caller(request).key_id,
        "keys.create",
        detail=f"{key.key_id} role={key.role}",
    )
    return {**key.public_dict(), "secret": secret}


@router.delete(
    "/keys/{key_id}",
    summary="Revoke an API key (its sessions end too)",
    responses=error_responses(400, *ADMIN_ERRORS, 404, 422),
)
def revoke_key(key_id: KeyId, request: Request) -> dict[str, Any]:
    caller = request_caller(request)
    keys = _keys(request)
    if not caller.global_admin:
        # A key outside the caller's scope answers as an unknown one: its existence is
        # not the caller's business.
        target = next((key for key in keys.list() if key.key_id == key_id), None)
        if target is None or not caller.covers(target.collections):
            raise UnknownKey(f"There is no API key {key_id!r}; see `mmsearch keys list`.")
    key = keys.revoke(key_id)
    state_of(request).audit(request_caller(request).key_id, "keys.revoke", detail=key.key_id)
    return key.public_dict()


@router.get("/rules", summary="Registered business rules", responses=error_responses(*ADMIN_ERRORS))
def list_rules(request: Request) -> dict[str, Any]:
    registry = Registry(state_of(request).settings.home)
    return {"rules": registry.rules(), "rankers": registry.rankers()}


@router.put(
    "/rules/{rules_name}",
    summary="Register (or replace) named business rules from their YAML/TOML text",
    openapi_extra=json_body_doc(RulesBody),
    responses=error_responses(400, *ADMIN_ERRORS, 413, 415, 422),
)
async def put_rules(rules_name: RegistryName, request: Request) -> dict[str, Any]:
    body = await read_model(request, RulesBody)
    entry = Registry(state_of(request).settings.home).add_rules_text(
        rules_name, body.text, body.format
    )
    state_of(request).audit(request_caller(request).key_id, "rules.add", detail=rules_name)
    return entry


@router.delete(
    "/rules/{rules_name}",
    summary="Remove named business rules",
    responses=error_responses(400, *ADMIN_ERRORS, 404, 422),
)
def delete_rules(rules_name: RegistryName, request: Request) -> dict[str, Any]:
    entry = Registry(state_of(request).settings.home).remove_rules(rules_name)
    state_of(request).audit(request_caller(request).key_id, "rules.remove", detail=rules_name)
    return entry


@router.put(
    "/collections/{name}/default-rules",
    summary="Set (or clear) the rules a collection's searches use by default",
    openapi_extra=json_body_doc(DefaultRulesBody),
    responses=error_responses(400, *ADMIN_ERRORS, 404, 413, 415, 422),
)
async def put_default_rules(name: CollectionName, request: Request) -> dict[str, Any]:
    body = await read_model(request, DefaultRulesBody)
    state = state_of(request)
    state.workspace.collection(name)  # 404 for a collection that does not exist
    previous = Registry(state.settings.home).set_default_rules(name, body.rules)
    state.audit(
        request_caller(request).key_id,
        "rules.default",
        collection=name,
        detail=f"{previous} -> {body.rules}",
    )
    return {"collection": name, "default_rules": body.rules, "previous": previous}


@router.get(
    "/rankers", summary="Registered reranker models", responses=error_responses(*ADMIN_ERRORS)
)
def list_rankers(request: Request) -> dict[str, Any]:
    return {"rankers": Registry(state_of(request).settings.home).rankers()}


@router.delete(
    "/rankers/{ranker_name}",
    summary="Remove a registered reranker model",
    responses=error_responses(400, *ADMIN_ERRORS, 404, 422),
)
def delete_ranker(ranker_name: RegistryName, request: Request) -> dict[str, Any]:
    entry = Registry(state_of(request).settings.home).remove_ranker(ranker_name)
    state_of(request).audit(request_caller(request).key_id, "rankers.remove", detail=ranker_name)
    return entry


@router.get(
    "/audit",
    summary="The audit trail, newest last",
    responses=error_responses(400, *ADMIN_ERRORS, 422),
)
def read_audit(
    request: Request,
    since: str | None = Query(
        default=None,
        pattern=r"^[12]\d{3}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
        r"([T ]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)?$",
        description="ISO date or time, e.g. 2026-01-31 or 2026-01-31T12:00:00Z",
    ),
    collection: str | None = Query(default=None, max_length=64),
    limit: int = Query(default=100, ge=1, le=10_000),
) -> dict[str, Any]:
    try:
        start = datetime.fromisoformat(since.replace("Z", "+00:00")) if since else None
    except ValueError:
        raise QueryError(f"'since' is not a date or time: {since!r}.") from None
    caller = request_caller(request)
    if collection is not None and not caller.may_use(collection):
        raise Forbidden(f"This key may not use collection '{collection}'.")
    events = state_of(request).audit_log.read(
        since=start, collection=collection, limit=limit, within=caller.collections
    )
    return {"events": events}


@router.get(
    "/audit/verify",
    summary="Check the audit trail's hash chain: edited, deleted or reordered lines",
    responses=error_responses(*ADMIN_ERRORS),
)
def verify_audit(request: Request) -> dict[str, Any]:
    return state_of(request).audit_log.verify().as_dict()
