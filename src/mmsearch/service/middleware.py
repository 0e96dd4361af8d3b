"""ASGI middleware: request ids, body size cap, request metrics and the access log.

It also sets ``client_var`` (``ip:<address>``) for the request's whole handling, so an
anonymous refusal audited by the guard or a route is counted per client address.

Written as plain ASGI (not ``BaseHTTPMiddleware``) so streaming bodies are counted
as they arrive and an oversized upload is refused without buffering it first.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mmsearch.monitoring.logs import request_id_var
from mmsearch.monitoring.metrics import ServiceMetrics
from mmsearch.service.errors import PayloadTooLarge, error_body

access_log = logging.getLogger("mmsearch.access")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
client_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mmsearch_client", default=None
)


class ServiceMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: ServiceMetrics, max_body: int):
        self.app = app
        self.metrics = metrics
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get("x-request-id", "")
        request_id = given if REQUEST_ID.match(given) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        client = scope.get("client")
        client_token = client_var.set(f"ip:{client[0]}" if client else None)
        started = time.perf_counter()
        status = {"code": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        try:
            length = headers.get("content-length", "")
            if length.isdigit() and int(length) > self.max_body:
                await self._too_large(send_with_id)
            else:
                await self.app(scope, self._capped(receive), send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = _route_template(scope)
            self.metrics.observe_request(route, scope["method"], status["code"], seconds)
            access_log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": route,
                    "status": status["code"],
                    "duration_ms": round(seconds * 1000.0, 3),
                },
            )
            request_id_var.reset(token)
            client_var.reset(client_token)

    def _capped(self, receive: Receive) -> Receive:
        seen = 0

        async def capped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise PayloadTooLarge(
                        f"The request body is over the limit of {self.max_body} bytes."
                    )
            return message

        return capped

    async def _too_large(self, send: Send) -> None:
        body = json.dumps(
            error_body(
                "PayloadTooLarge", f"The request body is over the limit of {self.max_body} bytes."
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _route_template(scope: Scope) -> str:
    """The matched route's path template, so metric labels stay few (no ids in them)."""
    route = scope.get("route")
    if route is not None and hasattr(route, "path"):
        return str(route.path)
    app: Any = scope.get("app")
    for candidate in getattr(getattr(app, "router", None), "routes", []):
        match, _ = candidate.matches(scope)
        if match == Match.FULL:
            return str(getattr(candidate, "path", "unmatched"))
    return "unmatched"
