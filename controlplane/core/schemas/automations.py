"""Automations on the wire: create and update bodies (code, files, schedules, parameters, limits), what the
API answers, and the bodies of the automation actions (copy, owner, space, webhook runs)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from controlplane.core import execargs
from controlplane.core.schemas.runs import RunMetricsPublic
from controlplane.core.schemas.wire import ENV_NAME, NAME_MAX, Wire
from controlplane.core.states import AutomationState, NetworkMode, RunMode, RunStatus, Runtime


class ResourcesCreate(Wire):
    cpus: Annotated[float, Field(gt=0, le=64)] | None = None
    memory_mb: Annotated[int, Field(ge=16, le=1024 * 1024)] | None = None
    pids: Annotated[int, Field(ge=8, le=1_000_000)] | None = None


class ResourcesPublic(Wire):
    cpus: float
    memory_mb: int
    pids: int


class ScheduleCreate(Wire):
    """Seed 004 interval schedule (interval seconds, startAt, stopAt, timezone) or a 5-field cron."""

    cron: str | None = Field(None, max_length=128, description="5-field cron expression (seed 000).")
    interval: Annotated[int, Field(ge=1)] | None = Field(None, description="Seconds between runs.")
    start_at: datetime | None = None
    stop_at: datetime | None = None
    timezone: str = Field("UTC", max_length=64)

    @model_validator(mode="after")
    def _one_kind(self) -> ScheduleCreate:
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


class ParameterCreate(Wire):
    """A typed run parameter an automation declares (services/automations/parameters.py validates runs against them)."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", description="Key in the run's JSON input.")
    type: ParameterType = "string"
    mandatory: bool = False
    default: Any = Field(None, description="Filled in when the input leaves the parameter out (or null).")
    description: str = Field("", max_length=4096)


class ParameterPublic(ParameterCreate):
    """A declared parameter as the API answers it (the same fields as declared)."""


class AutomationBase(Wire):
    description: str = Field("", max_length=64 * 1024)
    space_id: str | None = Field(None, max_length=64)
    schedules: list[ScheduleCreate] = Field(default_factory=list, max_length=32)
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
    resources: ResourcesCreate = Field(default_factory=ResourcesCreate)
    network: NetworkMode = NetworkMode.NONE
    parameters: list[ParameterCreate] = Field(default_factory=list, max_length=100)

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if not ENV_NAME.match(k)]
        if bad:
            raise ValueError(f"invalid environment variable names: {', '.join(sorted(bad)[:10])}")
        return v

    @model_validator(mode="after")
    def _execable(self) -> AutomationBase:
        why = execargs.problem(self.args, self.env)
        if why:
            raise ValueError(why)
        return self


class AutomationCreate(AutomationBase):
    name: str = Field(min_length=1, max_length=NAME_MAX)


class AutomationUpdate(AutomationBase):
    """PUT: every field is optional, ``name`` too (seed 004 marks none required); fields given replace the
    stored ones, fields left out keep their values (so a seed-004 client that knows nothing of ``code`` does
    not wipe it)."""

    name: str | None = Field(None, min_length=1, max_length=NAME_MAX)


class RunSummaryPublic(Wire):
    """An automation's lastRun: seed 004's run fields (metrics, owner, space, test/archived flags, times)."""

    id: str
    status: RunStatus
    context: str
    title: str = ""
    error: list[dict[str, Any]] = Field(default_factory=list)
    metrics: RunMetricsPublic
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
    last_run: RunSummaryPublic | None = None
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
    timeout_seconds: int | None = None
    resources: ResourcesPublic
    network: NetworkMode
    version: int
    parameters: list[ParameterPublic] = Field(default_factory=list)


class AutomationCopyCreate(Wire):
    name: str = Field(min_length=1, max_length=NAME_MAX, description="Name of the new automation.")


class AutomationOwnerUpdate(Wire):
    user_id: str = Field(min_length=1, max_length=64, description="The unique identifier of the new owner.")


class AutomationSpaceUpdate(Wire):
    space_id: str = Field(min_length=1, max_length=64, description="The unique identifier of the new space.")


class ExecutionTokenPublic(Wire):
    execution_token: str


class WebhookRunPublic(Wire):
    """What POST .../actions/execute answers (201): the queued run, without its output."""

    id: str
    automation_id: str
    status: RunStatus
    context: str
    created_at: datetime


class AutomationSettingsUpdate(Wire):
    max_concurrent_runs_per_automation: Annotated[int, Field(ge=1, le=1000)] = Field(
        description="Maximum number of concurrent runs allowed per automation (caps each maxConcurrentRuns)."
    )


class AutomationSettingsPublic(AutomationSettingsUpdate):
    """The tenant's automation settings as they stand."""
