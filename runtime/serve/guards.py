"""What every cifar-serve request passes through before a route sees it, as plain ASGI middleware: the API key, the
body-size limit (413 from Content-Length, or counted as the body streams in), and one debug log line, the outcome
counter and the in-flight gauge per request.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from cifar_edge.runtime.serve.metrics import ServeMetrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

LOG = logging.getLogger("cifar_edge.serve")
OPEN_PATHS = ("/v2/health/live", "/v2/health/ready", "/", "/index.html")  # no key: health checks, the page itself


class BodyTooLarge(Exception):
    """The request body passed the limit while it streamed in (a route answers 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than the limit of {limit} bytes")


async def send_error(send: Send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(key.lower().encode(), value.encode()) for key, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class _HttpMiddleware:
    """An ASGI middleware that minds HTTP requests only: lifespan and other scopes go straight through."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        else:
            await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class BodyLimit(_HttpMiddleware):
    """413 for a declared Content-Length over ``limit``; BodyTooLarge raised from ``receive`` past it otherwise."""

    def __init__(self, app: App, limit: int) -> None:
        super().__init__(app)
        self.limit = limit

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await send_error(send, 413 if declared.isdigit() else 400, str(BodyTooLarge(self.limit)))
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, counted, send)


class ApiKey(_HttpMiddleware):
    """``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` on every path but health and the page (401 otherwise)."""

    def __init__(self, app: App, key: str) -> None:
        super().__init__(app)
        self.key = key.encode()

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-api-key")
        bearer = _header(scope, b"authorization")
        if given is None and bearer is not None and bearer[:7].lower() == "bearer ":
            given = bearer[7:].strip()
        if given is None or not hmac.compare_digest(given.encode(), self.key):
            await send_error(send, 401, "a valid API key is required", {"WWW-Authenticate": "Bearer"})
            return
        await self.app(scope, receive, send)


class RequestLog(_HttpMiddleware):
    """One debug line per request (method, path, status, milliseconds), its outcome counted, in-flight gauged."""

    def __init__(self, app: App, metrics: ServeMetrics) -> None:
        super().__init__(app)
        self.metrics = metrics

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, watched)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.answered(route_name(scope["path"]), status)
            if LOG.isEnabledFor(logging.DEBUG):
                milliseconds = (time.perf_counter() - started) * 1000
                LOG.debug("%s %s %d %.1f ms", scope["method"], scope["path"], status, milliseconds)


def route_name(path: str) -> str:
    """A bounded label for a path (model names and unknown paths must not make new time series)."""
    if path.startswith("/v2/models/"):
        last = path.rstrip("/").rsplit("/", 1)[-1]
        return last if last in ("infer", "classify", "ready", "config") else "model"
    if path.startswith("/v2/health/"):
        return "health"
    return {"/v2": "server", "/metrics": "metrics", "/": "page"}.get(path, "other")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None
