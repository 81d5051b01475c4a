"""The one error tree of the control plane.

Services raise these; only the exception handlers in ``controlplane.main`` turn them into HTTP responses
(seed 004's envelope ``{"errors": [{"code", "title", "detail"}], "traceId"}``). Engine and driver errors are
re-raised as one of these with ``from`` so the cause stays in the traceback.
"""

from __future__ import annotations

import enum
from typing import Any


class Code(enum.StrEnum):
    """Every ``code`` the API answers with: the first entry of an error envelope names one of these."""

    APP_OFFERING_NOT_FOUND = "APP_OFFERING_NOT_FOUND"
    ARGS_WITH_CRON = "ARGS_WITH_CRON"
    AUTOMATION_DISABLED = "AUTOMATION_DISABLED"
    AUTOMATION_GONE = "AUTOMATION_GONE"
    AUTOMATION_LIMIT = "AUTOMATION_LIMIT"
    AUTOMATION_NOT_FOUND = "AUTOMATION_NOT_FOUND"
    BACKEND_ERROR = "BACKEND_ERROR"
    BACKEND_NOT_INSTALLED = "BACKEND_NOT_INSTALLED"
    BACKEND_UNAVAILABLE = "BACKEND_UNAVAILABLE"
    BAD_REQUEST = "BAD_REQUEST"
    BUSY = "BUSY"
    CODE_TOO_LARGE = "CODE_TOO_LARGE"
    CONFLICT = "CONFLICT"
    CRON_REQUIRED = "CRON_REQUIRED"
    DEFAULT_SPACE = "DEFAULT_SPACE"
    EMAIL_NOT_CONFIGURED = "EMAIL_NOT_CONFIGURED"
    EXECUTION_NOT_FINISHED = "EXECUTION_NOT_FINISHED"
    FILTER_REQUIRED = "FILTER_REQUIRED"
    FORBIDDEN = "FORBIDDEN"
    HEADERS_TOO_LARGE = "HEADERS_TOO_LARGE"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    INVALID_ARGS = "INVALID_ARGS"
    INVALID_BREAKDOWN = "INVALID_BREAKDOWN"
    INVALID_CODE = "INVALID_CODE"
    INVALID_CURSOR = "INVALID_CURSOR"
    INVALID_EXECUTION_TOKEN = "INVALID_EXECUTION_TOKEN"
    INVALID_FIELDS = "INVALID_FIELDS"
    INVALID_FIELD = "INVALID_FIELD"
    INVALID_FILTER = "INVALID_FILTER"
    INVALID_JSON = "INVALID_JSON"
    INVALID_NAME = "INVALID_NAME"
    INVALID_PARAMETERS = "INVALID_PARAMETERS"
    INVALID_PARAMETER_DECLARATION = "INVALID_PARAMETER_DECLARATION"
    INVALID_PATH = "INVALID_PATH"
    INVALID_RULE_TEXT = "INVALID_RULE_TEXT"
    INVALID_SCHEDULE = "INVALID_SCHEDULE"
    INVALID_SIGNATURE = "INVALID_SIGNATURE"
    INVALID_SORT = "INVALID_SORT"
    INVALID_STREAM = "INVALID_STREAM"
    INVALID_TRANSITION = "INVALID_TRANSITION"
    INVALID_VALUE = "INVALID_VALUE"
    JOB_NOT_FOUND = "JOB_NOT_FOUND"
    LAUNCH_FAILED = "LAUNCH_FAILED"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    LINK_EXPIRED = "LINK_EXPIRED"
    MEMBER_NOT_FOUND = "MEMBER_NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    MISSING_FIELD = "MISSING_FIELD"
    NAME_TAKEN = "NAME_TAKEN"
    NOTIFICATION_NOT_FOUND = "NOTIFICATION_NOT_FOUND"
    NOT_FOUND = "NOT_FOUND"
    NO_EMAIL_ADDRESS = "NO_EMAIL_ADDRESS"
    PARAMETER_INVALID = "PARAMETER_INVALID"
    PARAMETER_MISSING = "PARAMETER_MISSING"
    PARAMETER_TYPE = "PARAMETER_TYPE"
    PARAMETER_UNKNOWN = "PARAMETER_UNKNOWN"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    PROCESS_AMBIGUOUS = "PROCESS_AMBIGUOUS"
    PROCESS_NOT_FOUND = "PROCESS_NOT_FOUND"
    QUEUE_FULL = "QUEUE_FULL"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    RATE_LIMITED = "RATE_LIMITED"
    READ_ONLY_FIELD = "READ_ONLY_FIELD"
    RESERVED_ENV = "RESERVED_ENV"
    RESERVED_NAME = "RESERVED_NAME"
    RUNS_ACTIVE = "RUNS_ACTIVE"
    RUN_BUSY = "RUN_BUSY"
    RUN_ENDED = "RUN_ENDED"
    RUN_HAS_NO_RESPONSE = "RUN_HAS_NO_RESPONSE"
    RUN_LOST = "RUN_LOST"
    RUN_NOT_FINISHED = "RUN_NOT_FINISHED"
    SANDBOX_IMAGE_MISSING = "SANDBOX_IMAGE_MISSING"
    SCRIPT_FAILED = "SCRIPT_FAILED"
    SECRETS_KEY_INVALID = "SECRETS_KEY_INVALID"
    SECRET_UNREADABLE = "SECRET_UNREADABLE"
    SCRIPT_NOT_SCHEDULED = "SCRIPT_NOT_SCHEDULED"
    SCRIPT_NOT_STARTED = "SCRIPT_NOT_STARTED"
    SCRIPT_TIMEOUT = "SCRIPT_TIMEOUT"
    SPACE_NOT_EMPTY = "SPACE_NOT_EMPTY"
    SPACE_NOT_FOUND = "SPACE_NOT_FOUND"
    STORAGE_UNAVAILABLE = "STORAGE_UNAVAILABLE"
    SYNC_LIMIT = "SYNC_LIMIT"
    TOKEN_HOST_MISMATCH = "TOKEN_HOST_MISMATCH"
    TOO_MANY = "TOO_MANY"
    UNKNOWN_FIELD = "UNKNOWN_FIELD"
    UNAUTHORIZED = "UNAUTHORIZED"
    USER_NOT_FOUND = "USER_NOT_FOUND"
    VALIDATION_FAILED = "VALIDATION_FAILED"
    VALUE_TOO_LONG = "VALUE_TOO_LONG"


class ControlPlaneError(Exception):
    status_code: int = 500
    code: str = Code.INTERNAL_ERROR
    title: str = "Internal error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: Code | None = None,
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
    code: str = Code.BAD_REQUEST
    title = "Bad request"


class InvalidJson(BadRequest):
    code: str = Code.INVALID_JSON


class ValidationFailed(ControlPlaneError):
    status_code = 422
    code: str = Code.VALIDATION_FAILED
    title = "The request is not valid"


class Unauthorized(ControlPlaneError):
    status_code = 401
    code: str = Code.UNAUTHORIZED
    title = "Missing or invalid bearer token"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kw)


class Forbidden(ControlPlaneError):
    status_code = 403
    code: str = Code.FORBIDDEN
    title = "Your role does not allow this"


class NotFound(ControlPlaneError):
    status_code = 404
    code: str = Code.NOT_FOUND
    title = "Not found"


class MethodNotAllowed(ControlPlaneError):
    status_code = 405
    code: str = Code.METHOD_NOT_ALLOWED
    title = "Method not allowed"


class Conflict(ControlPlaneError):
    status_code = 409
    code: str = Code.CONFLICT
    title = "Conflict with the current state of the resource"


class InvalidTransition(Conflict):
    """A status move the transition table (core/states.py) does not allow: a bug, or a lost race."""

    code: str = Code.INVALID_TRANSITION
    title = "The run cannot move to that status"

    def __init__(self, detail: str, *, current: str, target: str) -> None:
        super().__init__(detail)
        self.current = current
        self.target = target


class PayloadTooLarge(ControlPlaneError):
    status_code = 413
    code: str = Code.PAYLOAD_TOO_LARGE
    title = "Request body too large"


class HeadersTooLarge(ControlPlaneError):
    status_code = 431
    code: str = Code.HEADERS_TOO_LARGE
    title = "Request header fields too large"


class QuotaExceeded(ControlPlaneError):
    status_code = 429
    code: str = Code.QUOTA_EXCEEDED
    title = "Too many runs in flight"

    def __init__(self, detail: str | None = None, *, retry_after: int = 1, **kw: Any) -> None:
        headers = {"Retry-After": str(max(1, int(retry_after)))}
        super().__init__(detail, headers=headers, **kw)
        self.retry_after = max(1, int(retry_after))


class StorageUnavailable(ControlPlaneError):
    status_code = 503
    code: str = Code.STORAGE_UNAVAILABLE
    title = "The database is not reachable"


class BackendError(ControlPlaneError):
    status_code = 502
    code: str = Code.BACKEND_ERROR
    title = "The sandbox engine failed"


class BackendUnavailable(BackendError):
    status_code = 503
    code: str = Code.BACKEND_UNAVAILABLE
    title = "The sandbox engine is not reachable"


class LaunchFailed(BackendError):
    status_code = 500
    code: str = Code.LAUNCH_FAILED
    title = "The run could not be started"


class SandboxImageMissing(LaunchFailed):
    code: str = Code.SANDBOX_IMAGE_MISSING
    title = "The sandbox image is not present on the engine"


class RunLost(ControlPlaneError):
    """A run whose sandbox vanished while nobody watched it (recorded on the run, never answered to a request)."""

    code: str = Code.RUN_LOST
    title = "The run was lost"


class SecretsKeyInvalid(ControlPlaneError):
    code: str = Code.SECRETS_KEY_INVALID
    title = "The secrets key setting is not valid"


class SecretUnreadable(ControlPlaneError):
    code: str = Code.SECRET_UNREADABLE
    title = "A secret cannot be decrypted with the configured keys"


class BackendNotInstalled(ControlPlaneError):
    code: str = Code.BACKEND_NOT_INSTALLED
    title = "The selected backend's extra is not installed"


# --- scripting dialect (seed 002): how a script execution ended, as that API's status codes ---------------


class ScriptNotStarted(ControlPlaneError):
    status_code = 500
    code: str = Code.SCRIPT_NOT_STARTED
    title = "Could not start script"


class ScriptNotScheduled(ControlPlaneError):
    status_code = 500
    code: str = Code.SCRIPT_NOT_SCHEDULED
    title = "The script could not be scheduled"


class ScriptFailed(ControlPlaneError):
    status_code = 502
    code: str = Code.SCRIPT_FAILED
    title = "Could not fully execute script"


class ScriptTimedOut(ControlPlaneError):
    status_code = 504
    code: str = Code.SCRIPT_TIMEOUT
    title = "The script was stopped because of a timeout"


# --- rate limits and signed links (run export/debug) ------------------------------------------------------


class RateLimited(ControlPlaneError):
    """Over a user's requests-per-minute tier; the headers carry Retry-After and X-RateLimit-*."""

    status_code = 429
    code: str = Code.RATE_LIMITED
    title = "Too many requests"


class LinkInvalid(ControlPlaneError):
    """A signed URL whose signature does not match (forged, altered or extended) or is missing."""

    status_code = 403
    code: str = Code.INVALID_SIGNATURE
    title = "The link is not valid"


class LinkExpired(ControlPlaneError):
    """A signed URL past its expiry: ask for a new one."""

    status_code = 410
    code: str = Code.LINK_EXPIRED
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
