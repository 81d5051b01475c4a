"""Request and response shapes of the native API (seed 004's resource model plus what running code needs).

Field names are seed 004's camelCase on the wire; Python attributes are snake_case. Responses are built
by the services layer from rows; routers only declare these as bodies and response models.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

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


ParameterType = Literal["string", "integer", "number", "boolean", "date", "datetime", "list"]


class ParameterSpec(Wire):
    """A typed run parameter an automation declares (services/automations/parameters.py validates runs against them)."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", description="Key in the run's JSON input.")
    type: ParameterType = "string"
    mandatory: bool = False
    default: Any = Field(None, description="Filled in when the input leaves the parameter out (or null).")
    description: str = Field("", max_length=4096)


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
    parameters: list[ParameterSpec] = Field(default_factory=list, max_length=100)

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
    """PUT: every field is optional, ``name`` too (seed 004 marks none required); fields given replace the
    stored ones, fields left out keep their values (so a seed-004 client that knows nothing of ``code`` does
    not wipe it)."""

    name: str | None = Field(None, min_length=1, max_length=NAME_MAX)


class RunSummary(Wire):
    """An automation's lastRun: seed 004's run fields (metrics, owner, space, test/archived flags, times)."""

    id: str
    status: RunStatus
    context: str
    title: str = ""
    error: list[dict[str, Any]] = Field(default_factory=list)
    metrics: RunMetrics
    exit_code: int | None = None
    owner_id: str | None = None
    space_id: str | None = None
    test_run: bool = False
    is_test_run: bool = False
    archived: bool = False
    is_archived: bool = False
    created_at: datetime
    updated_at: datetime
    start_time: datetime | None = None
    stop_time: datetime | None = None
    scheduled_start_time: datetime | None = None
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
    last_run_status: RunStatus | None = Field(
        None, description="The last run's status; while it waits in the queue: not started (seed 004 has no queued)."
    )
    duration: int | None = Field(None, description="Duration of the last run in seconds.")
    max_concurrent_runs: int
    schedules: list[SchedulePublic] = Field(default_factory=list)
    execution_token: str | None = Field(
        None,
        description="Authorizes POST .../{id}/actions/execute (webhook runs); shown only to users who may run it.",
    )
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
    parameters: list[ParameterSpec] = Field(default_factory=list)


# --- automation actions and spaces (issue 4) -------------------------------------------------------

SpaceRole = Literal["viewer", "operator", "editor"]


class AutomationCopy(Wire):
    name: str = Field(min_length=1, max_length=NAME_MAX, description="Name of the new automation.")


class OwnerChange(Wire):
    user_id: str = Field(min_length=1, max_length=64, description="The unique identifier of the new owner.")


class SpaceChange(Wire):
    space_id: str = Field(min_length=1, max_length=64, description="The unique identifier of the new space.")


class ExecutionTokenPublic(Wire):
    execution_token: str


class WebhookRun(Wire):
    """What POST .../actions/execute answers (201): the queued run, without its output."""

    id: str
    automation_id: str
    status: RunStatus
    context: str
    created_at: datetime


class SpaceCreate(Wire):
    name: str = Field(min_length=1, max_length=NAME_MAX)
    description: str = Field("", max_length=64 * 1024)


class SpaceUpdate(Wire):
    """PUT: ``name`` is required; a description left out keeps its value."""

    name: str = Field(min_length=1, max_length=NAME_MAX)
    description: str | None = Field(None, max_length=64 * 1024)


class SpacePublic(Wire):
    id: str
    name: str
    description: str
    is_default: bool = Field(description="The tenant's default space: every user of the tenant belongs to it.")
    owner_id: str
    role: SpaceRole | None = Field(None, description="The caller's role in the space (none: not a member).")
    created_at: datetime
    updated_at: datetime


class SpaceMemberPut(Wire):
    role: SpaceRole = "editor"


class SpaceMemberPublic(Wire):
    user_id: str
    user_name: str
    role: SpaceRole
    created_at: datetime


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
    billable: bool = Field(
        False, description="The run got a sandbox (it has a startTime), so it counts in usage; filter billable eq true."
    )


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


# --- scripting dialect (seed 002) -------------------------------------------------------------------


class ScriptLogEntry(Wire):
    execution_id: str = Field(description="The run's id.")
    script_id: str = Field(description="The automation's id.")
    execution_date: str = Field(description="When it started (else was created), UTC: 2022-11-11T07:09:35Z.")
    status_code: int = Field(description="What /scripting/script/{scriptId}/run answered (or would have).")


class ScriptLogPage(Wire):
    filtered_logs: list[ScriptLogEntry]
    more_elements: bool


# --- tenant variables and secrets -------------------------------------------------------------------


class VariablePut(Wire):
    value: str = Field(description="The value (a secret's is never returned once written).")


class VariablePublic(Wire):
    name: str = Field(description="Without the sandbox prefix; runs see it as JETQUERY_<name>.")
    value: str
    version: int = Field(description="Writes of this name so far (1 when created).")
    created_at: datetime
    updated_at: datetime


class SecretPublic(Wire):
    name: str = Field(description="Without the sandbox prefix; runs see it as JETQUERY_<name>.")
    version: int = Field(description="Writes of this name so far: a PUT again rotates it.")
    key_id: str = Field(description="Fingerprint of the encryption key it is stored under.")
    masked: bool = Field(description="Whether run output masks it (values of 4 bytes or more).")
    created_at: datetime
    updated_at: datetime


class VariableList(Wire):
    data: list[VariablePublic]


class SecretList(Wire):
    data: list[SecretPublic]


class ReEncrypted(Wire):
    re_encrypted: int = Field(description="Secrets now stored under the current (first) key.")
    key_id: str = Field(description="Fingerprint of the current key.")


# --- run export and debug, usage (seed 004) ----------------------------------------------------------


class ExportLink(Wire):
    url: str = Field(description="Signed, time-limited URL (no bearer token needed) of the run's zip archive.")


class TimelineEntry(Wire):
    event: str = Field(description="created, queued, claimed, started, stopping or ended.")
    status: RunStatus
    at: datetime
    replica: str | None = Field(None, description="The control-plane replica that claimed the run.")


class RunPhases(Wire):
    queued_seconds: float | None = None
    starting_seconds: float | None = None
    running_seconds: float | None = None
    total_seconds: float | None = None


class RunDebugRecord(Wire):
    """What the debug URL serves (and run.json in an export): the run, its automation and its timeline."""

    run: RunPublic
    automation: dict[str, Any]
    timeline: list[TimelineEntry]
    phases: RunPhases
    files: list[dict[str, Any]] = Field(default_factory=list, description="In an export: the archive's files.")


class UsageAutomation(Wire):
    guid: str
    name: str
    owner_id: str


class UsageEntry(Wire):
    date: str
    name: str
    value: int
    automation: UsageAutomation | None = None


class UsagePublic(Wire):
    data: list[UsageEntry]
    links: Links = Field(default_factory=Links)


# --- notifications (seed 001: processes jobs' notification-type N/B) ----------------------------------


class NotificationPublic(Wire):
    id: str
    kind: str = Field(description="What it is about: process.job (a processes job ended).")
    title: str
    body: str
    run_id: str | None = None
    created_at: datetime
    read_at: datetime | None = None
    read: bool


class NotificationList(Wire):
    data: list[NotificationPublic]
