"""Runs on the wire: the body that starts one, what a run looks like (output, metrics, artifacts), its export
link and its debug record."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field, field_validator

from controlplane.core import execargs
from controlplane.core.schemas.wire import Wire
from controlplane.core.states import RunContext, RunStatus


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

    @field_validator("args")
    @classmethod
    def _execable(cls, v: list[str] | None) -> list[str] | None:
        why = execargs.problem(v or ())
        if why:
            raise ValueError(why)
        return v


def parse_context(value: str) -> RunContext:
    if value == "api":
        return RunContext.API_ASYNC
    allowed = {"api", "api_sync", "api_async", "test_run", "editor", "detail", "lookup"}
    if value not in allowed:
        raise ValueError(f"context must be one of {', '.join(sorted(allowed))}")
    return RunContext(value)


class NetworkMetricsPublic(Wire):
    rx_bytes: int = 0
    tx_bytes: int = 0


class RunMetricsPublic(Wire):
    blocks: list[dict[str, Any]] = Field(default_factory=list)
    network: NetworkMetricsPublic = Field(default_factory=NetworkMetricsPublic)
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
    metrics: RunMetricsPublic
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


class ExportLinkPublic(Wire):
    url: str = Field(description="Signed, time-limited URL (no bearer token needed) of the run's zip archive.")


class TimelineEntryPublic(Wire):
    event: str = Field(description="created, queued, claimed, started, stopping or ended.")
    status: RunStatus
    at: datetime
    replica: str | None = Field(None, description="The control-plane replica that claimed the run.")


class RunPhasesPublic(Wire):
    queued_seconds: float | None = None
    starting_seconds: float | None = None
    running_seconds: float | None = None
    total_seconds: float | None = None


class RunDebugPublic(Wire):
    """What the debug URL serves (and run.json in an export): the run, its automation and its timeline."""

    run: RunPublic
    automation: dict[str, Any]
    timeline: list[TimelineEntryPublic]
    phases: RunPhasesPublic
    files: list[dict[str, Any]] = Field(default_factory=list, description="In an export: the archive's files.")
