"""The one error tree of the control plane.

Services raise these; only the exception handlers in ``controlplane.main`` turn them into HTTP responses
(seed 004's envelope ``{"errors": [{"code", "title", "detail"}], "traceId"}``). Engine and driver errors are
re-raised as one of these with ``from`` so the cause stays in the traceback.
"""

from __future__ import annotations

from typing import Any


class ControlPlaneError(Exception):
    status_code: int = 500
    code: str = "INTERNAL_ERROR"
    title: str = "Internal error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        title: str | None = None,
        extra: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title or self.title)
        self.detail = detail
        if code:
            self.code = code
        if title:
            self.title = title
        self.extra = extra or []
        self.headers = headers or {}

    def entries(self) -> list[dict[str, Any]]:
        first: dict[str, Any] = {"code": self.code, "title": self.title}
        if self.detail:
            first["detail"] = self.detail
        return [first, *self.extra]


class BadRequest(ControlPlaneError):
    status_code = 400
    code = "BAD_REQUEST"
    title = "Bad request"


class InvalidJson(BadRequest):
    code = "INVALID_JSON"


class ValidationFailed(ControlPlaneError):
    status_code = 422
    code = "VALIDATION_FAILED"
    title = "The request is not valid"


class Unauthorized(ControlPlaneError):
    status_code = 401
    code = "UNAUTHORIZED"
    title = "Missing or invalid bearer token"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kw)


class Forbidden(ControlPlaneError):
    status_code = 403
    code = "FORBIDDEN"
    title = "Your role does not allow this"


class NotFound(ControlPlaneError):
    status_code = 404
    code = "NOT_FOUND"
    title = "Not found"


class MethodNotAllowed(ControlPlaneError):
    status_code = 405
    code = "METHOD_NOT_ALLOWED"
    title = "Method not allowed"


class Conflict(ControlPlaneError):
    status_code = 409
    code = "CONFLICT"
    title = "Conflict with the current state of the resource"


class InvalidTransition(Conflict):
    """A status move the transition table (core/states.py) does not allow: a bug, or a lost race."""

    code = "INVALID_TRANSITION"
    title = "The run cannot move to that status"

    def __init__(self, detail: str, *, current: str, target: str) -> None:
        super().__init__(detail)
        self.current = current
        self.target = target


class PayloadTooLarge(ControlPlaneError):
    status_code = 413
    code = "PAYLOAD_TOO_LARGE"
    title = "Request body too large"


class HeadersTooLarge(ControlPlaneError):
    status_code = 431
    code = "HEADERS_TOO_LARGE"
    title = "Request header fields too large"


class QuotaExceeded(ControlPlaneError):
    status_code = 429
    code = "QUOTA_EXCEEDED"
    title = "Too many runs in flight"

    def __init__(self, detail: str | None = None, *, retry_after: int = 1, **kw: Any) -> None:
        headers = {"Retry-After": str(max(1, int(retry_after)))}
        super().__init__(detail, headers=headers, **kw)
        self.retry_after = max(1, int(retry_after))


class StorageUnavailable(ControlPlaneError):
    status_code = 503
    code = "STORAGE_UNAVAILABLE"
    title = "The database is not reachable"


class BackendError(ControlPlaneError):
    status_code = 502
    code = "BACKEND_ERROR"
    title = "The sandbox engine failed"


class BackendUnavailable(BackendError):
    status_code = 503
    code = "BACKEND_UNAVAILABLE"
    title = "The sandbox engine is not reachable"


class LaunchFailed(BackendError):
    status_code = 500
    code = "LAUNCH_FAILED"
    title = "The run could not be started"


class SandboxImageMissing(LaunchFailed):
    code = "SANDBOX_IMAGE_MISSING"
    title = "The sandbox image is not present on the engine"


class BackendNotInstalled(ControlPlaneError):
    code = "BACKEND_NOT_INSTALLED"
    title = "The selected backend's extra is not installed"


# --- scripting dialect (seed 002): how a script execution ended, as that API's status codes ---------------


class ScriptNotStarted(ControlPlaneError):
    status_code = 500
    code = "SCRIPT_NOT_STARTED"
    title = "Could not start script"


class ScriptNotScheduled(ControlPlaneError):
    status_code = 500
    code = "SCRIPT_NOT_SCHEDULED"
    title = "The script could not be scheduled"


class ScriptFailed(ControlPlaneError):
    status_code = 502
    code = "SCRIPT_FAILED"
    title = "Could not fully execute script"


class ScriptTimedOut(ControlPlaneError):
    status_code = 504
    code = "SCRIPT_TIMEOUT"
    title = "The script was stopped because of a timeout"


# --- rate limits and signed links (run export/debug) ------------------------------------------------------


class RateLimited(ControlPlaneError):
    """Over a user's requests-per-minute tier; the headers carry Retry-After and X-RateLimit-*."""

    status_code = 429
    code = "RATE_LIMITED"
    title = "Too many requests"


class LinkInvalid(ControlPlaneError):
    """A signed URL whose signature does not match (forged, altered or extended) or is missing."""

    status_code = 403
    code = "INVALID_SIGNATURE"
    title = "The link is not valid"


class LinkExpired(ControlPlaneError):
    """A signed URL past its expiry: ask for a new one."""

    status_code = 410
    code = "LINK_EXPIRED"
    title = "The link has expired"


def for_http_status(status: int, detail: str) -> ControlPlaneError:
    """The error for a status the web framework answered by itself (no route, wrong method, ...)."""
    known: dict[int, type[ControlPlaneError]] = {
        400: BadRequest,
        401: Unauthorized,
        403: Forbidden,
        404: NotFound,
        405: MethodNotAllowed,
        409: Conflict,
        413: PayloadTooLarge,
        422: ValidationFailed,
        429: RateLimited,
        431: HeadersTooLarge,
        503: StorageUnavailable,
    }
    kind = known.get(status, BadRequest if status < 500 else ControlPlaneError)
    return kind(detail, title=detail)
