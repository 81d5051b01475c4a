"""The request middleware: a request id for every request (the ``X-Request-Id`` header and the traceId of
the error envelope), body and header size limits (413/431), request metrics by route template, and the
access log line that carries the traceId."""

from __future__ import annotations

import logging
import time
import uuid

from starlette.routing import Match, replace_params
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controlplane.api import jsondepth
from controlplane.api.errors import envelope
from controlplane.core import metrics
from controlplane.core.errors import ControlPlaneError, HeadersTooLarge, InvalidJson, PayloadTooLarge
from controlplane.core.settings import Settings

log = logging.getLogger("controlplane.http")


class RequestContext:
    """Pure ASGI middleware: request id, size limits (413/431), metrics by route template, access log."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status = {"code": 500}
        headers = scope.get("headers", [])
        header_bytes = sum(len(k) + len(v) + 4 for k, v in headers)
        if header_bytes > self.settings.max_header_bytes:
            await self._reject(
                send, request_id, HeadersTooLarge(f"request headers are above {self.settings.max_header_bytes} bytes")
            )
            self._observe(scope, 431, start, request_id)
            return
        length = next((v for k, v in headers if k == b"content-length"), None)
        limit = self.settings.max_body_bytes
        if length is not None and length.isdigit() and int(length) > limit:
            await self._reject(send, request_id, PayloadTooLarge(f"the request body is above {limit} bytes"))
            self._observe(scope, 413, start, request_id)
            return
        ctype = next((v for k, v in headers if k == b"content-type"), b"").decode("latin-1")
        limited_receive = _BodyReader(
            receive, limit, judge=scope.get("method") in ("POST", "PUT", "PATCH") and jsondepth.is_json(ctype)
        )

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                existing = list(message.get("headers", []))
                if not any(k.lower() == b"x-request-id" for k, _ in existing):
                    existing.append((b"x-request-id", request_id.encode()))
                # X-RateLimit-* of the user's tier, set by api.deps.get_principal (a 429 carries its own)
                limits = scope["state"].get("rate_limit_headers") or {}
                present = {k.lower() for k, _ in existing}
                existing += [(k.encode(), v.encode()) for k, v in limits.items() if k.lower().encode() not in present]
                message["headers"] = existing
            await send(message)

        try:
            await self.app(scope, limited_receive, send_wrapper)
        except _BodyTooLarge:
            status["code"] = 413
            await self._reject(send, request_id, PayloadTooLarge(f"the request body is above {limit} bytes"))
        except _BodyTooDeep:
            status["code"] = 400
            too_deep = InvalidJson(f"the JSON body nests deeper than {jsondepth.MAX_DEPTH} levels")
            await self._reject(send, request_id, too_deep)
        finally:
            self._observe(scope, status["code"], start, request_id)

    async def _reject(self, send: Send, request_id: str, exc: ControlPlaneError) -> None:
        response = envelope(request_id, exc)
        await response({"type": "http"}, _empty_receive, send)

    def _observe(self, scope: Scope, status: int, start: float, request_id: str) -> None:
        elapsed = time.perf_counter() - start
        route = _route_template(scope)
        method = scope.get("method", "")
        metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
        metrics.HTTP_LATENCY.labels(method, route).observe(elapsed)
        log.info(
            "%s %s %s %.1fms traceId=%s",
            method,
            scope.get("path", ""),
            status,
            elapsed * 1000,
            request_id,
        )


class _BodyReader:
    """The app's ``receive``: counts the body against the limit and, for a JSON body, judges its nesting
    once it is whole (api/jsondepth.py), so no parser recurses into a body built to overflow it."""

    def __init__(self, receive: Receive, limit: int, *, judge: bool) -> None:
        self.receive = receive
        self.limit = limit
        self.judge = judge
        self.received = 0
        self.chunks: list[bytes] = []

    async def __call__(self) -> Message:
        message = await self.receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            self.received += len(chunk)
            if self.received > self.limit:
                raise _BodyTooLarge()
            if self.judge:
                self.chunks.append(chunk)
                if not message.get("more_body") and jsondepth.too_deep(b"".join(self.chunks)):
                    raise _BodyTooDeep()
        return message


class _BodyTooLarge(Exception):
    pass


class _BodyTooDeep(Exception):
    pass


async def _empty_receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def _route_template(scope: Scope) -> str:
    # The router records the route it matched; under include_router (FastAPI >= 0.1xx) that route's path
    # lacks the include prefix, which is what the request path has left over once the route's part is off.
    route = scope.get("route")
    path_format = getattr(route, "path_format", None)
    if isinstance(path_format, str):
        params = dict(scope.get("path_params") or {})
        rendered, _ = replace_params(path_format, getattr(route, "param_convertors", {}), params)
        path = str(scope.get("path", ""))
        if path.endswith(rendered):
            return path[: len(path) - len(rendered)] + path_format
    app = scope.get("app")
    router = getattr(app, "router", None)
    if router is None:
        return "unmatched"
    for route in router.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(getattr(route, "path", "unmatched"))
    return "unmatched"
