"""Web-UI sign-in: trade an API key for an HttpOnly, SameSite=Strict session cookie.

The browser never stores the key: the cookie holds a signed session token, and the
pages carry the CSRF token derived from it, which the guard requires on every write
made with the cookie. API clients keep using ``Authorization: Bearer``.

Signing in checks the key exactly as the guard checks a bearer key: failure budgets
first, argon2 off the event loop. Signing out records the session as ended in the
workspace (see ``RevokedSessions``), so the old cookie and CSRF token stop working in
every worker process, not only in the browser that drops the cookie.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from mmsearch.service.access import SESSION_COOKIE, AccessControl, AuthThrottled
from mmsearch.service.errors import TooManyRequests, Unauthorized, error_responses
from mmsearch.service.requests import read_model
from mmsearch.service.schemas import json_body_doc
from mmsearch.service.state import ServiceState

router = APIRouter(tags=["session"])


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1, max_length=200, description="an API key's secret")


class SessionOut(BaseModel):
    key_id: str
    role: str
    csrf_token: str
    expires_in_s: int


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    from mmsearch.service.routers.ui import page

    return page(request, "login.html", next=same_origin_path(next))


MAX_NEXT_CHARS = 2_048


def same_origin_path(target: str) -> str:
    r"""``target`` when a browser resolves it to a path on this origin, else "/".

    Browsers are more forgiving than a ``startswith("/")`` check: they read ``\`` as
    ``/`` and drop tabs and newlines, so ``/\evil.example`` and ``/\t/evil.example``
    are ``//evil.example``, another host. So: no whitespace at all; one leading slash;
    no backslash or control character, also after percent-decoding (which some
    redirects apply once more); and no scheme or host once parsed."""
    if not target or len(target) > MAX_NEXT_CHARS:
        return "/"
    if any(ch.isspace() for ch in target):
        return "/"
    for form in (target, unquote(target)):
        if not form.startswith("/") or form.startswith("//"):
            return "/"
        if "\\" in form or any(ch != " " and not ch.isprintable() for ch in form):
            return "/"
        parts = urlsplit(form)
        if parts.scheme or parts.netloc:
            return "/"
    return target


@router.post(
    "/v1/session",
    response_model=SessionOut,
    summary="Sign in with an API key (sets the web UI's session cookie)",
    openapi_extra=json_body_doc(LoginBody),
    responses=error_responses(400, 401, 413, 415, 422, 429),
)
async def sign_in(request: Request) -> JSONResponse:
    access: AccessControl = request.app.state.access
    state: ServiceState = request.app.state.mmsearch
    body = await read_model(request, LoginBody)
    if not access.enabled():
        raise Unauthorized("This server does not use API keys; no sign-in is needed.")
    client = request.client.host if request.client else "unknown"
    try:
        caller = await access.from_bearer(body.key, f"ip:{client}")
    except AuthThrottled as throttled:
        if throttled.audit:
            state.audit_refusal("anonymous", "POST", "/v1/session", 429, "login throttled")
        raise TooManyRequests(str(throttled), throttled.retry_after) from None
    if caller is None:
        state.audit_refusal("anonymous", "POST", "/v1/session", 401, "login failed")
        raise Unauthorized("The API key is not valid (unknown, revoked or expired).")
    token = access.sessions.issue(caller.key_id)
    lifetime = int(access.sessions.lifetime_s)
    payload: dict[str, Any] = {
        "key_id": caller.key_id,
        "role": str(caller.role),
        "csrf_token": access.sessions.csrf_token(token),
        "expires_in_s": lifetime,
    }
    response = JSONResponse(payload)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=lifetime,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.delete(
    "/v1/session",
    summary="Sign out (ends the session on the server and clears its cookie)",
    responses=error_responses(400, 403, 429),
)
def sign_out(request: Request) -> JSONResponse:
    access: AccessControl = request.app.state.access
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        access.sessions.revoke(token)  # a forged or expired token has nothing to end
    response = JSONResponse({"signed_out": True})
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
