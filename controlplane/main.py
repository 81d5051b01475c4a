"""The ASGI application: routers, the error envelope, and the request middleware.

Only this module turns errors into HTTP responses. Every 4xx/5xx carries seed 004's envelope
``{"errors": [{"code", "title", "detail"}], "traceId"}``; the traceId is also the ``X-Request-Id`` response
header and appears in the server's log line for that request.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, replace_params
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controlplane import __version__
from controlplane.api.deps import automation_in_view
from controlplane.api.dialects import core000 as core000_dialect
from controlplane.api.dialects import processes as processes_dialect
from controlplane.api.dialects import rules as rules_dialect
from controlplane.api.dialects import scripting as scripting_dialect
from controlplane.api.routes import (
    automations,
    health,
    notifications,
    run_responses,
    runs,
    spaces,
    tokens,
    usage,
    variables,
)
from controlplane.core import metrics
from controlplane.core.errors import ControlPlaneError, HeadersTooLarge, PayloadTooLarge, StorageUnavailable
from controlplane.core.settings import Settings
from controlplane.services.platform import Platform

log = logging.getLogger("controlplane.http")

NATIVE_PREFIXES = ("/api/v1/automations", "/api/workflows/automations")


def envelope(request_id: str, exc: ControlPlaneError) -> JSONResponse:
    body = {"errors": exc.entries(), "traceId": request_id}
    headers = dict(exc.headers)
    headers["X-Request-Id"] = request_id
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


def _request_id(request: Request) -> str:
    return getattr(request.state, "request_id", None) or uuid.uuid4().hex


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
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge()
            return message

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


class _BodyTooLarge(Exception):
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


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ControlPlaneError)
    async def _cp_error(request: Request, exc: ControlPlaneError) -> JSONResponse:
        if exc.status_code >= 500:
            log.error("traceId=%s %s: %s", _request_id(request), exc.code, exc.detail or exc.title)
        return envelope(_request_id(request), exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            err: ControlPlaneError = ControlPlaneError(
                "the body is not valid JSON", code="INVALID_JSON", title="Bad request"
            )
            err.status_code = 400
            return envelope(_request_id(request), err)
        entries = [
            {
                "code": "VALIDATION_FAILED",
                "title": "The request is not valid",
                "detail": f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}",
            }
            for e in errors[:20]
        ]
        first = ControlPlaneError(
            entries[0]["detail"], code="VALIDATION_FAILED", title="The request is not valid", extra=entries[1:]
        )
        first.status_code = 422
        return envelope(_request_id(request), first)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
        err = ControlPlaneError(str(exc.detail), code=codes.get(exc.status_code, "HTTP_ERROR"), title=str(exc.detail))
        err.status_code = exc.status_code
        err.headers = dict(exc.headers or {})
        return envelope(_request_id(request), err)

    async def _db_down(request: Request, exc: Exception) -> JSONResponse:
        log.error("traceId=%s database unavailable: %s", _request_id(request), type(exc).__name__)
        return envelope(
            _request_id(request),
            StorageUnavailable("the database did not answer; retry shortly", headers={"Retry-After": "2"}),
        )

    app.add_exception_handler(OperationalError, _db_down)
    app.add_exception_handler(PoolTimeout, _db_down)
    app.add_exception_handler(DBAPIError, _db_down)
    app.add_exception_handler(ConnectionRefusedError, _db_down)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("traceId=%s unhandled error", _request_id(request))
        return envelope(_request_id(request), ControlPlaneError("an unexpected error occurred; quote the traceId"))


def _declare_extra_schemas(app: FastAPI) -> None:
    """Bodies a route parses itself (JSON or raw, e.g. POST .../runs) still get their schema in OpenAPI."""
    from fastapi.openapi.utils import get_openapi

    from controlplane.core.schemas import RunCreate

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            extra = RunCreate.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
            schemas.update(extra.pop("$defs", {}))
            schemas["RunCreate"] = extra
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(
    settings: Settings | None = None,
    *,
    platform: Platform | None = None,
    on_started: Callable[[Platform], Awaitable[None] | None] | None = None,
) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = platform is None
        p = platform or await Platform.start(settings)
        app.state.platform = p
        if on_started is not None:
            result = on_started(p)
            if result is not None:
                await result
        try:
            yield
        finally:
            if owned:
                await p.close()

    app = FastAPI(
        title="controlplane",
        version=__version__,
        description="Runs customers' scripts in hardened, single-use sandboxes. Native API: seed 004's "
        "automations resource model, extended with code, runtime, args, env, resources, network, "
        "exitCode, stdout and stderr.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    if platform is not None:
        app.state.platform = platform
    install_error_handlers(app)
    for prefix in NATIVE_PREFIXES:
        tag = "workflows" if "workflows" in prefix else "v1"
        app.include_router(  # before automations: GET /usage is not GET /{id}
            usage.router,
            prefix=prefix,
            generate_unique_id_function=lambda r, t=tag: f"{t}_{r.name}",  # type: ignore[misc]
        )
        app.include_router(  # signed export/debug links: no bearer token, so no automation_in_view
            runs.signed_router,
            prefix=prefix,
            generate_unique_id_function=lambda r, t=tag: f"{t}_{r.name}",  # type: ignore[misc]
        )
        app.include_router(
            automations.router,
            prefix=prefix,
            generate_unique_id_function=lambda r, t=tag: f"{t}_{r.name}",  # type: ignore[misc]
        )
        app.include_router(
            runs.router,
            prefix=prefix,
            dependencies=[Depends(automation_in_view)],  # runs are seen by whoever sees their automation
            generate_unique_id_function=lambda r, t=tag: f"{t}_{r.name}",  # type: ignore[misc]
        )
        app.include_router(
            run_responses.router,
            prefix=prefix,
            dependencies=[Depends(automation_in_view)],
            generate_unique_id_function=lambda r, t=tag: f"{t}_{r.name}",  # type: ignore[misc]
        )
    app.include_router(tokens.router, prefix="/api/v1/tokens")
    app.include_router(spaces.router, prefix="/api/v1/spaces")
    app.include_router(health.router)
    app.include_router(scripting_dialect.router, prefix="/scripting")  # seed 002
    app.include_router(core000_dialect.router, prefix=core000_dialect.PREFIX)  # seed 000
    app.include_router(processes_dialect.router, prefix=processes_dialect.PREFIX)  # seed 001
    app.include_router(notifications.router, prefix="/api/v1/notifications")
    for rules_prefix in rules_dialect.PREFIXES:  # seed 003
        app.include_router(
            rules_dialect.router,
            prefix=rules_prefix,
            generate_unique_id_function=lambda r, p=rules_prefix: f"{p.strip('/').replace('/', '_')}_{r.name}",  # type: ignore[misc]
        )
    app.include_router(variables.variables_router, prefix="/api/v1/variables")
    app.include_router(variables.secrets_router, prefix="/api/v1/secrets")
    _declare_extra_schemas(app)
    wrapped: Any = RequestContext
    app.add_middleware(wrapped, settings=settings)
    return app
