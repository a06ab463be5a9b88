"""ASGI middleware: a context id per request (X-Request-Id in, and out on every response), an
access log line, and a hard cap on request body size (per route where a route takes more, e.g.
droplet uploads)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from overcast.api.errors import cf_error_of, error_body
from overcast.core.context import context_scope
from overcast.core.ids import new_context_id
from overcast.core.logging import get_logger
from overcast.models.errors import RequestTooLarge

log = get_logger("overcast.api.access")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        body_limits: Sequence[tuple[str, int]] = (),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # (path regex, limit): the first matching route's limit replaces the global one.
        self.body_limits = [(re.compile(pattern), limit) for pattern, limit in body_limits]

    def _limit_for(self, path: str) -> int:
        for pattern, limit in self.body_limits:
            if pattern.match(path):
                return limit
        return self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id") or _header(scope, b"x-vcap-request-id")
        context_id = given if given and _SAFE_ID.match(given) else new_context_id()
        with context_scope(context_id):
            await self._handle(scope, receive, send, context_id)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, context_id: str) -> None:
        started = time.perf_counter()
        status = {"code": 500, "sent": False}
        limit = self._limit_for(str(scope.get("path", "")))
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._too_large(send, context_id, status, limit)
            self._log(scope, status["code"], started)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI passes HTTPExceptions raised while reading the body through to
                    # the error handlers, which answer with the CF-shaped 413.
                    raise HTTPException(413, self._too_large_detail(limit))
            return message

        async def tagged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["sent"] = True
                headers = list(message.get("headers", []))
                encoded = context_id.encode()
                headers += [(b"x-request-id", encoded), (b"x-vcap-request-id", encoded)]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, limited_receive, tagged_send)
        except HTTPException as error:
            if error.status_code != 413 or status["sent"]:
                raise
            await self._too_large(send, context_id, status, limit)
        self._log(scope, int(status["code"]), started)

    async def _too_large(
        self, send: Send, context_id: str, status: dict[str, Any], limit: int
    ) -> None:
        cf = cf_error_of(RequestTooLarge)
        body = json.dumps(error_body(cf, self._too_large_detail(limit))).encode()
        status["code"] = cf.status
        await send(
            {
                "type": "http.response.start",
                "status": cf.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", context_id.encode()),
                    (b"x-vcap-request-id", context_id.encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _too_large_detail(limit: int) -> str:
        return f"The request body is larger than {limit} bytes"

    @staticmethod
    def _log(scope: Scope, status: int, started: float) -> None:
        log.info(
            "http.request",
            method=scope.get("method"),
            path=scope.get("path"),
            status=status,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
