"""Seed 000's answers (/api/core/automations): a job, the automations /browse lists, the ``data`` envelope."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import Field

from controlplane.dialects.schemas import SeedModel

JobState = Literal["Pending", "Running", "Succeeded", "Failed"]
T = TypeVar("T")


class JobPublic(SeedModel):
    """A job: a run, or a schedule (then its latest run's state and output, with the schedule's fields)."""

    jobid: str = Field(description="The run's id, or the schedule's.")
    jobstatus: str = Field(description="Relative URL of the job's status.")
    jobstate: JobState
    exit_code: str | None = Field(None, alias="exitCode", description='The exit code as a string; "" while none.')
    stdout: str | None = None
    stderr: str | None = None
    status: str | None = Field(None, description="A run's own status (the native API's).")
    error: list[dict[str, Any]] | None = Field(None, description="A run's error entries.")
    automation: str | None = Field(None, description="A schedule's automation.")
    cron: str | None = None
    timezone: str | None = None
    next_run_at: str | None = Field(None, alias="nextRunAt")
    last_run_at: str | None = Field(None, alias="lastRunAt")
    last_jobid: str | None = Field(None, alias="lastJobid", description="A schedule's latest run.")


class BrowsedSchedulePublic(SeedModel):
    jobid: str
    cron: str | None
    timezone: str
    next_run_at: str | None = Field(alias="nextRunAt")


class BrowsedAutomationPublic(SeedModel):
    name: str
    id: str
    description: str
    state: str
    run_mode: str = Field(alias="runMode")
    last_jobid: str | None = Field(alias="lastJobid")
    last_jobstate: JobState | None = Field(alias="lastJobstate")
    last_run_at: str | None = Field(alias="lastRunAt")
    schedules: list[BrowsedSchedulePublic]


class DataPublic(SeedModel, Generic[T]):
    """Every seed 000 answer: ``{"data": ...}``."""

    data: T
