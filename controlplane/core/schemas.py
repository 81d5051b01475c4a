"""Request and response shapes of the native API (seed 004's resource model plus what running code needs).

Field names are seed 004's camelCase on the wire; Python attributes are snake_case. Responses are built
by the services layer from rows; routers only declare these as bodies and response models.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from controlplane.core.states import AutomationState, NetworkMode, RunContext, RunMode, RunStatus, Runtime

NAME_MAX = 128
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


# --- automations ------------------------------------------------------------------------------------


class ResourcesIn(Wire):
    cpus: Annotated[float, Field(gt=0, le=64)] | None = None
    memory_mb: Annotated[int, Field(ge=16, le=1024 * 1024)] | None = None
    pids: Annotated[int, Field(ge=8, le=1_000_000)] | None = None


class ResourcesPublic(Wire):
    cpus: float
    memory_mb: int
    pids: int


class ScheduleIn(Wire):
    """Seed 004 interval schedule (interval seconds, startAt, stopAt, timezone) or a 5-field cron."""

    cron: str | None = Field(None, max_length=128, description="5-field cron expression (seed 000).")
    interval: Annotated[int, Field(ge=1)] | None = Field(None, description="Seconds between runs.")
    start_at: datetime | None = None
    stop_at: datetime | None = None
    timezone: str = Field("UTC", max_length=64)

    @model_validator(mode="after")
    def _one_kind(self) -> ScheduleIn:
        if (self.cron is None) == (self.interval is None):
            raise ValueError("a schedule needs exactly one of 'cron' or 'interval'")
        return self


class SchedulePublic(Wire):
    id: str
    cron: str | None = None
    interval: int | None = None
    start_at: datetime | None = None
    stop_at: datetime | None = None
    timezone: str
    last_started_at: datetime | None = None
    next_run_at: datetime | None = None


class AutomationBase(Wire):
    description: str = Field("", max_length=64 * 1024)
    space_id: str | None = Field(None, max_length=64)
    schedules: list[ScheduleIn] = Field(default_factory=list, max_length=32)
    workspace: dict[str, Any] = Field(default_factory=dict)
    max_concurrent_runs: Annotated[int, Field(ge=1, le=1000)] | None = None
    run_mode: RunMode | None = None
    runtime: Runtime = Runtime.PYTHON
    code: str | None = Field(None, description="The script, as one file (entrypoint defaults to main.py/main.sh).")
    files: dict[str, str] | None = Field(None, description="Several files {path: text}; needs entrypoint.")
    entrypoint: str | None = Field(None, max_length=256)
    args: list[str] = Field(default_factory=list, max_length=256)
    env: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: Annotated[int, Field(ge=1)] | None = None
    resources: ResourcesIn = Field(default_factory=ResourcesIn)
    network: NetworkMode = NetworkMode.NONE

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if not ENV_NAME.match(k)]
        if bad:
            raise ValueError(f"invalid environment variable names: {', '.join(sorted(bad)[:10])}")
        return v


class AutomationCreate(AutomationBase):
    name: str = Field(min_length=1, max_length=NAME_MAX)


class AutomationUpdate(AutomationBase):
    """PUT: ``name`` is required as in seed 004; other fields given replace the stored ones, fields left
    out keep their values (so a seed-004 client that knows nothing of ``code`` does not wipe it)."""

    name: str = Field(min_length=1, max_length=NAME_MAX)


class RunSummary(Wire):
    id: str
    status: RunStatus
    context: str
    title: str = ""
    error: list[dict[str, Any]] = Field(default_factory=list)
    exit_code: int | None = None
    created_at: datetime
    start_time: datetime | None = None
    stop_time: datetime | None = None
    duration: int | None = None
    executed_by_id: str | None = None


class AutomationPublic(Wire):
    id: str
    name: str
    description: str
    state: AutomationState
    run_mode: RunMode
    owner_id: str
    space_id: str | None
    created_at: datetime
    updated_at: datetime
    last_run: RunSummary | None = None
    last_run_at: datetime | None = None
    last_run_status: RunStatus | None = None
    duration: int | None = Field(None, description="Duration of the last run in seconds.")
    max_concurrent_runs: int
    schedules: list[SchedulePublic] = Field(default_factory=list)
    execution_token: str
    workspace: dict[str, Any] = Field(default_factory=dict)
    snippet_ids: list[str] = Field(default_factory=list)
    endpoint_ids: list[str] = Field(default_factory=list)
    connector_ids: list[str] = Field(default_factory=list)
    runtime: Runtime
    entrypoint: str
    files: dict[str, str] | None = Field(None, description="Present on GET of one automation; omitted in lists.")
    args: list[str]
    env: dict[str, str]
    timeout_seconds: int | None
    resources: ResourcesPublic
    network: NetworkMode
    version: int


# --- runs -------------------------------------------------------------------------------------------


class RunCreate(Wire):
    context: str = Field(
        "api_async",
        description="api_sync waits for the run and answers 200 with it; api or api_async answer 201 at once.",
    )
    title: str = Field("", max_length=256)
    args: list[str] | None = Field(None, max_length=256, description="Replaces the automation's args.")
    input: Any = Field(None, description="Any JSON value; the script reads it as JSON on stdin and in a file.")

    @field_validator("context")
    @classmethod
    def _context(cls, v: str) -> str:
        return parse_context(v).value


def parse_context(value: str) -> RunContext:
    if value == "api":
        return RunContext.API_ASYNC
    allowed = {"api", "api_sync", "api_async", "test_run", "editor", "detail", "lookup"}
    if value not in allowed:
        raise ValueError(f"context must be one of {', '.join(sorted(allowed))}")
    return RunContext(value)


class NetworkMetrics(Wire):
    rx_bytes: int = 0
    tx_bytes: int = 0


class RunMetrics(Wire):
    blocks: list[dict[str, Any]] = Field(default_factory=list)
    network: NetworkMetrics = Field(default_factory=NetworkMetrics)
    total_api_calls: int = 0
    cpu_seconds: float = 0.0
    memory_peak_bytes: int = 0


class ArtifactPublic(Wire):
    path: str
    size: int
    sha256: str
    content_type: str
    href: str


class RunPublic(Wire):
    id: str
    automation_id: str
    automation_version: int
    title: str
    status: RunStatus
    context: str
    args: list[str]
    exit_code: int | None
    stdout: str = Field(description="stdout as text, inline up to a limit; all of it via .../logs.")
    stderr: str
    stdout_bytes: int = Field(description="Bytes the script wrote to stdout (all of them, kept or not).")
    stderr_bytes: int
    truncated: bool = Field(description="True when a stream passed the log cap and its middle was dropped.")
    stdout_inline_truncated: bool = False
    stderr_inline_truncated: bool = False
    error: list[dict[str, Any]]
    metrics: RunMetrics
    artifacts: list[ArtifactPublic] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    start_time: datetime | None
    stop_time: datetime | None
    duration: int | None = Field(None, description="Seconds from start to stop (seed 004: integer).")
    duration_ms: int | None = None
    timeout_seconds: int
    scheduled_start_time: datetime | None = None
    executed_by_id: str | None
    owner_id: str | None
    space_id: str | None
    retry_of: str | None = None
    test_run: bool = False
    is_test_run: bool = False
    archived: bool = False
    is_archived: bool = False


# --- lists ------------------------------------------------------------------------------------------


class Href(Wire):
    href: str


class Links(Wire):
    next: Href | None = None
    prev: Href | None = None


T = TypeVar("T")


class Page(Wire, Generic[T]):
    data: list[T]
    links: Links = Field(default_factory=Links)


class ErrorEntry(Wire):
    code: str
    title: str
    detail: str | None = None


class ErrorBody(Wire):
    errors: list[ErrorEntry]
    trace_id: str


class AutomationSettings(Wire):
    max_concurrent_runs_per_automation: Annotated[int, Field(ge=1, le=1000)] = Field(
        description="Maximum number of concurrent runs allowed per automation (caps each maxConcurrentRuns)."
    )


# --- tokens -----------------------------------------------------------------------------------------


class TokenCreate(Wire):
    user: str = Field(min_length=1, max_length=128)
    role: str = "developer"
    description: str = Field("", max_length=256)


class TokenCreated(Wire):
    id: str
    token: str
    user_id: str
    role: str
    tenant_id: str
