"""Errors to HTTP responses: the only place that does it.

Every 4xx/5xx carries seed 004's envelope ``{"errors": [{"code", "title", "detail"}], "traceId"}``; the
traceId is also the ``X-Request-Id`` response header and appears in the server's log line for the request.
"""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from controlplane.core.errors import (
    ControlPlaneError,
    InvalidJson,
    StorageUnavailable,
    ValidationFailed,
    for_http_status,
)

log = logging.getLogger("controlplane.http")


def envelope(request_id: str, exc: ControlPlaneError) -> JSONResponse:
    body = {"errors": exc.entries(), "traceId": request_id}
    headers = dict(exc.headers)
    headers["X-Request-Id"] = request_id
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", None) or uuid.uuid4().hex


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ControlPlaneError)
    async def _cp_error(request: Request, exc: ControlPlaneError) -> JSONResponse:
        if exc.status_code >= 500:
            log.error("traceId=%s %s: %s", request_id_of(request), exc.code, exc.detail or exc.title)
        return envelope(request_id_of(request), exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return envelope(request_id_of(request), InvalidJson("the body is not valid JSON"))
        details = [f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}" for e in errors[:20]]
        first = ValidationFailed(details[0])
        first.extra = [entry for detail in details[1:] for entry in ValidationFailed(detail).entries()]
        return envelope(request_id_of(request), first)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = for_http_status(exc.status_code, str(exc.detail))
        error.headers = dict(exc.headers or {})
        return envelope(request_id_of(request), error)

    async def _db_down(request: Request, exc: Exception) -> JSONResponse:
        log.error("traceId=%s database unavailable: %s", request_id_of(request), type(exc).__name__)
        return envelope(
            request_id_of(request),
            StorageUnavailable("the database did not answer; retry shortly", headers={"Retry-After": "2"}),
        )

    app.add_exception_handler(OperationalError, _db_down)
    app.add_exception_handler(PoolTimeout, _db_down)
    app.add_exception_handler(DBAPIError, _db_down)
    app.add_exception_handler(ConnectionRefusedError, _db_down)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("traceId=%s unhandled error", request_id_of(request))
        return envelope(request_id_of(request), ControlPlaneError("an unexpected error occurred; quote the traceId"))
