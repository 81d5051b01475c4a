"""Run status values (seed 004) and the only function allowed to change a run's status.

Everything that moves a run from one status to another goes through ``transition``; the table below is
the whole state machine, so a reviewer can see every legal path in one place.
"""

from __future__ import annotations

import enum

from controlplane.core.errors import InvalidTransition

__all__ = ["InvalidTransition"]  # raised by transition(); lives in the error tree


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    FINISHED = "finished"
    FINISHED_WITH_WARNINGS = "finished with warnings"
    FAILED = "failed"
    STOPPED = "stopped"
    MUST_STOP = "must stop"
    EXCEEDED_LIMIT = "exceeded limit"
    NOT_STARTED = "not started"


TERMINAL: frozenset[RunStatus] = frozenset(
    {
        RunStatus.FINISHED,
        RunStatus.FINISHED_WITH_WARNINGS,
        RunStatus.FAILED,
        RunStatus.STOPPED,
        RunStatus.EXCEEDED_LIMIT,
        RunStatus.NOT_STARTED,
    }
)
ACTIVE: frozenset[RunStatus] = frozenset({RunStatus.STARTING, RunStatus.RUNNING, RunStatus.MUST_STOP})

_ENDINGS = {RunStatus.FINISHED, RunStatus.FINISHED_WITH_WARNINGS, RunStatus.FAILED, RunStatus.EXCEEDED_LIMIT}

ALLOWED: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset({RunStatus.STARTING, RunStatus.STOPPED, RunStatus.NOT_STARTED, RunStatus.FAILED}),
    RunStatus.STARTING: frozenset({RunStatus.RUNNING, RunStatus.MUST_STOP, RunStatus.STOPPED} | _ENDINGS),
    RunStatus.RUNNING: frozenset({RunStatus.MUST_STOP, RunStatus.STOPPED} | _ENDINGS),
    # A run told to stop may still end on its own before the kill lands.
    RunStatus.MUST_STOP: frozenset({RunStatus.STOPPED} | _ENDINGS),
}


def can_transition(current: RunStatus, target: RunStatus) -> bool:
    return target in ALLOWED.get(current, frozenset())


def transition(current: RunStatus | str, target: RunStatus) -> RunStatus:
    """Return ``target`` if the move is legal, else raise ``InvalidTransition``."""
    cur = RunStatus(current)
    if not can_transition(cur, target):
        raise InvalidTransition(f"a run cannot go from {cur.value!r} to {target.value!r}", current=cur, target=target)
    return target


class RunContext(enum.StrEnum):
    """Who started a run. Seed 004's values plus ours (scheduled, retry, triggered)."""

    TEST_RUN = "test_run"
    EDITOR = "editor"
    DETAIL = "detail"
    API_SYNC = "api_sync"
    API_ASYNC = "api_async"
    WEBHOOK = "webhook"
    LOOKUP = "lookup"
    SCHEDULED = "scheduled"
    RETRY = "retry"
    TRIGGERED = "triggered"

    @property
    def synchronous(self) -> bool:
        return self in (RunContext.API_SYNC, RunContext.TEST_RUN, RunContext.EDITOR, RunContext.LOOKUP)


class RunMode(enum.StrEnum):
    MANUAL = "manual"
    SCHEDULED = "scheduled"
    TRIGGERED = "triggered"
    WEBHOOK = "webhook"


class AutomationState(enum.StrEnum):
    AVAILABLE = "available"
    UNAVAILABLE = "unavailable"
    DISABLED = "disabled"


class Runtime(enum.StrEnum):
    PYTHON = "python"
    SHELL = "shell"


class NetworkMode(enum.StrEnum):
    NONE = "none"
    API = "api"
    EGRESS = "egress"


class Role(enum.StrEnum):
    ADMIN = "admin"
    DEVELOPER = "developer"
    OPERATOR = "operator"
    VIEWER = "viewer"

    @classmethod
    def parse(cls, value: str) -> Role:
        """Accept our names and the seeds' admin names (sys_administrator, TenantAdmin)."""
        aliases = {"sys_administrator": "admin", "tenantadmin": "admin", "tenant_admin": "admin"}
        key = value.strip()
        return cls(aliases.get(key.lower(), key.lower()))


class ErrorCode(enum.StrEnum):
    """Codes of the ``error`` entries recorded on a run."""

    RUN_TIMEOUT = "RUN_TIMEOUT"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NON_ZERO_EXIT = "NON_ZERO_EXIT"
    KILLED_BY_SIGNAL = "KILLED_BY_SIGNAL"
    SANDBOX_KILLED = "SANDBOX_KILLED"  # the sandbox itself was killed from outside: not the script's doing
    LAUNCH_FAILED = "LAUNCH_FAILED"
    BACKEND_UNAVAILABLE = "BACKEND_UNAVAILABLE"
    RUN_LOST = "RUN_LOST"
    STOPPED_BY_USER = "STOPPED_BY_USER"
    OUTPUT_TRUNCATED = "OUTPUT_TRUNCATED"
    ARTIFACTS_SKIPPED = "ARTIFACTS_SKIPPED"
    QUEUE_TIMEOUT = "QUEUE_TIMEOUT"
    INTERNAL = "INTERNAL"
