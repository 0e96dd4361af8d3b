"""The guard: every request passes here before any route, body parsing or validation.

In order: the Host header must be one the service answers (DNS rebinding); a write
from a browser must come from an allowed origin and carry JSON or multipart (a
cross-site page can send ``text/plain`` or a form without a preflight, never JSON);
the caller is authenticated (bearer key, or session cookie + CSRF token for writes;
a key that must be hashed is first charged to the client's and the key id's failure
budgets, then verified off the event loop, see ``mmsearch.service.access``);
the caller's budget of requests is checked; the route's permission and the key's
collections are checked. Refusals are JSON errors that name what is missing, never
what exists, and each one is appended to the audit trail.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mmsearch.service.access import (
    ANONYMOUS,
    CSRF_HEADER,
    OPERATOR,
    SESSION_COOKIE,
    AccessControl,
    AuthThrottled,
    Caller,
)
from mmsearch.service.errors import error_body
from mmsearch.service.permissions import (
    COLLECTION_PARAMS,
    PAGES,
    PUBLIC_PREFIXES,
    ROUTE_PERMISSIONS,
)

log = logging.getLogger("mmsearch.security")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BODY_TYPES = ("application/json", "multipart/form-data")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
RefusalHook = Callable[[Caller, str, str, int, str], None]


class Refusal(Exception):
    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        headers: dict[str, str] | None = None,
        *,
        audit: bool = True,
    ):
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.headers = headers or {}
        self.audit = audit and status in (401, 403, 429)


class GuardMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        access: AccessControl,
        routes: list[BaseRoute],
        allowed_hosts: list[str],
        allowed_origins: list[str],
        on_refusal: RefusalHook,
    ):
        self.app = app
        self.access = access
        self.routes = routes
        self.allowed_hosts = {h.lower() for h in allowed_hosts}
        self.allowed_origins = {o.rstrip("/").lower() for o in allowed_origins}
        self.on_refusal = on_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        caller = ANONYMOUS
        template: str | None = None
        try:
            self._check_host(headers)
            method = scope["method"]
            if method in UNSAFE_METHODS:
                self._check_origin(headers)
                self._check_body_type(headers)
            template, params = self._match_route(scope)
            caller, session = await self._authenticate(headers, scope)
            self._check_rate(caller, scope)
            if template is not None:
                self._authorise(caller, method, template, params)
                if session is not None and method in UNSAFE_METHODS and template != "/v1/session":
                    self._check_csrf(session, headers)
        except Refusal as refusal:
            if refusal.audit:
                self.on_refusal(
                    caller, scope["method"], scope["path"], refusal.status, refusal.kind
                )
            if refusal.status == 401 and scope["method"] == "GET" and template in PAGES:
                await _redirect_to_login(scope, send)
                return
            await _send_error(send, refusal)
            return
        scope.setdefault("state", {})["caller"] = caller
        if template is not None and _guarded(scope["method"], template):
            send = _private_responses(send)
        await self.app(scope, receive, send)

    def _match_route(self, scope: Scope) -> tuple[str | None, dict[str, Any]]:
        """The path template and parameters of the route this request will reach, if any
        (None for unknown paths and wrong methods: the router answers 404 / 405)."""
        for route in self.routes:
            match, child = route.matches(scope)
            if match == Match.FULL:
                return str(getattr(route, "path", "")), dict(child.get("path_params", {}))
        return None, {}

    # --- checks, in the order they run ------------------------------------------------

    def _check_host(self, headers: dict[str, str]) -> None:
        if "*" in self.allowed_hosts:
            return
        host = _hostname(headers.get("host", ""))
        if host not in self.allowed_hosts:
            raise Refusal(
                400,
                "HostNotAllowed",
                "This Host name is not served here; the operator lists accepted names in "
                "MMSEARCH_ALLOWED_HOSTS.",
            )

    def _check_origin(self, headers: dict[str, str]) -> None:
        """Writes from a browser must come from this service's own pages or a listed origin."""
        if headers.get("sec-fetch-site", "") == "cross-site" and not self.allowed_origins:
            raise Refusal(403, "OriginNotAllowed", "Cross-site requests may not change anything.")
        origin = headers.get("origin")
        if origin is None:
            return  # not sent by a browser for this request: nothing to check
        origin = origin.rstrip("/").lower()
        own = {f"{scheme}://{headers.get('host', '').lower()}" for scheme in ("http", "https")}
        if origin not in own and origin not in self.allowed_origins:
            raise Refusal(
                403,
                "OriginNotAllowed",
                "Requests from this Origin may not change anything; the operator lists "
                "accepted origins in MMSEARCH_ALLOWED_ORIGINS.",
            )

    def _check_body_type(self, headers: dict[str, str]) -> None:
        has_body = headers.get("content-length", "0") not in ("", "0") or (
            "transfer-encoding" in headers
        )
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if has_body and kind not in BODY_TYPES:
            raise Refusal(
                415,
                "UnsupportedMediaType",
                "Send the request body as application/json or multipart/form-data.",
            )

    async def _authenticate(
        self, headers: dict[str, str], scope: Scope
    ) -> tuple[Caller, str | None]:
        if not self.access.enabled():
            return OPERATOR, None
        authorization = headers.get("authorization", "")
        if authorization:
            scheme, _, secret = authorization.partition(" ")
            secret = secret.strip() if scheme.lower() == "bearer" else ""
            caller = await self._bearer_caller(secret, scope)
            if caller is None:
                raise Refusal(
                    401,
                    "Unauthorized",
                    "The API key is not valid (unknown, revoked or expired).",
                    {"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
            return caller, None
        token = _cookie(headers, SESSION_COOKIE)
        if token:
            caller = self.access.from_session(token)
            if caller is not None:
                return caller, token
        return ANONYMOUS, None

    async def _bearer_caller(self, secret: str, scope: Scope) -> Caller | None:
        """The key's caller; failures are counted before argon2 runs (429 when spent)."""
        try:
            return await self.access.from_bearer(secret, _client(scope))
        except AuthThrottled as throttled:
            raise _too_many(throttled.retry_after, audit=throttled.audit) from None

    def _check_rate(self, caller: Caller, scope: Scope) -> None:
        who = caller.key_id if caller.via in ("bearer", "session") else _client(scope)
        wait = self.access.limiter.take(who)
        if wait > 0:
            raise _too_many(wait, audit=self.access.limiter.first_refusal(who))

    def _authorise(
        self, caller: Caller, method: str, template: str, params: dict[str, Any]
    ) -> None:
        if template.startswith(PUBLIC_PREFIXES) or template.startswith("/static"):
            return
        if (method, template) not in ROUTE_PERMISSIONS:
            method = "GET" if method == "HEAD" else method
        if (method, template) not in ROUTE_PERMISSIONS:
            raise Refusal(403, "Forbidden", "This route has no access rule; it is not served.")
        permission = ROUTE_PERMISSIONS[(method, template)]
        if permission is None:
            return
        if caller.anonymous:
            raise Refusal(
                401,
                "Unauthorized",
                "This route needs an API key: send 'Authorization: Bearer <key>'.",
                {"WWW-Authenticate": "Bearer"},
            )
        if not caller.may(permission):
            raise Refusal(
                403,
                "Forbidden",
                f"A {caller.role} key may not do this; it needs the '{permission}' permission.",
            )
        for param in COLLECTION_PARAMS:
            name = params.get(param)
            if isinstance(name, str) and not caller.may_use(name):
                raise Refusal(403, "Forbidden", f"This key may not use collection '{name}'.")

    def _check_csrf(self, session: str, headers: dict[str, str]) -> None:
        if not self.access.sessions.csrf_ok(session, headers.get(CSRF_HEADER, "")):
            raise Refusal(
                403,
                "CsrfFailed",
                "The CSRF token is missing or wrong; reload the page and try again.",
            )


def _too_many(wait: float, audit: bool = True) -> Refusal:
    seconds = max(1, math.ceil(wait))
    return Refusal(
        429,
        "TooManyRequests",
        f"Too many requests; retry in {seconds} s.",
        {"Retry-After": str(seconds)},
        audit=audit,
    )


_HOST = re.compile(
    r"^(?:\[(?P<ipv6>[0-9a-f:.]*:[0-9a-f:.]*)\]|(?P<name>[a-z0-9_](?:[a-z0-9_.-]{0,252})))"
    r"(?::[0-9]{1,5})?$"
)


def _hostname(host: str) -> str:
    """The host name of a Host header, or "" when it is not one: a name or an IPv4
    address, or an IPv6 address in brackets, with an optional port and nothing else
    (``localhost:80@evil.example`` and ``[localhost]`` are not host names)."""
    found = _HOST.match(host.strip().lower())
    if found is None:
        return ""
    return found.group("ipv6") or found.group("name")


def _guarded(method: str, template: str) -> bool:
    """Whether the route answers only to callers the guard let in (not a public one)."""
    if template.startswith(PUBLIC_PREFIXES):
        return False
    wanted = "GET" if method == "HEAD" else method
    return ROUTE_PERMISSIONS.get((wanted, template), "unlisted") is not None


def _private_responses(send: Send) -> Send:
    """What a guarded route answers depends on who asked: shared caches must not keep it
    (``private``), and a browser's own cache keys it by the credentials (``Vary``). A
    route that chose ``private`` caching keeps it; anything else becomes ``no-store``."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [
                (name, value)
                for name, value in message.get("headers", [])
                if name.lower() not in (b"cache-control", b"vary")
                or (name.lower() == b"cache-control" and value.lower().startswith(b"private"))
            ]
            if not any(name.lower() == b"cache-control" for name, _ in headers):
                headers.append((b"cache-control", b"private, no-store"))
            headers.append((b"vary", b"Authorization, Cookie"))
            message = {**message, "headers": headers}
        await send(message)

    return sending


def _cookie(headers: dict[str, str], name: str) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed cookie header is no session, not a server error
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"ip:{client[0]}" if client else "ip:unknown"


async def _redirect_to_login(scope: Scope, send: Send) -> None:
    target = scope["path"] + (
        ("?" + scope["query_string"].decode()) if scope["query_string"] else ""
    )
    location = "/login?next=" + quote(target, safe="")
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


async def _send_error(send: Send, refusal: Refusal) -> None:
    body = json.dumps(error_body(refusal.kind, str(refusal))).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode("latin-1")) for k, v in refusal.headers.items()),
    ]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def default_hosts(bind_host: str | None = None) -> list[str]:
    """Loopback names, plus the bound address when it is a specific one."""
    hosts: list[str] = list(LOOPBACK_HOSTS)
    if bind_host and bind_host not in ("0.0.0.0", "::", ""):
        hosts.append(bind_host.lower())
    return hosts
