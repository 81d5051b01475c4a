"""Seed 001's processes API, mounted at /api/v1/processes: a thin translation over dialects/processes/service.py and
dialects/processes/jobs.py. A process is an automation; its value is the lowercase slug of its name.

* ``GET /api/v1/processes?$filter=...``: ``{"processes": [AD_Process records]}`` (OData subset: eq, ne,
  contains(), startswith(), endswith(), and, or, not, parentheses, on name, value, description).
* ``GET /api/v1/processes/{value}``: one AD_Process record with its ``parameters``.
* ``POST /api/v1/processes/{value}``: run and wait -> AD_PInstance_ID, process, summary, isError, nodeId,
  logs, and reportFile*/exportFile* when the script produced them (base64).
* ``GET /api/v1/processes/jobs``: ``{"jobs": [AD_PInstance records]}`` of the running background jobs.
* ``GET /api/v1/processes/jobs/{id}``: one job (and its result once it ended).
* ``POST /api/v1/processes/jobs/{value}``: queue the process as a job (notification-type E, N, B) -> its
  scheduling information (an AD_PInstance record, IsProcessing true, jobStatus: where to poll).

``/jobs`` is always the jobs resource, never a process called "jobs" (such a process runs as a job with
POST /jobs/jobs; POST /jobs itself is 405). Status codes: 200; 400 bad JSON, bad parameters (every problem
listed), bad $filter, bad notification-type; 401; 403 role (run: operator); 404 no such process or job;
405; 409 process disabled, or a value naming several automations; 413; 429. Errors: the native envelope.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from controlplane.api.deps import PlatformDep, PrincipalDep
from controlplane.core.errors import MethodNotAllowed
from controlplane.core.schemas.wire import ErrorBody
from controlplane.dialects.processes.jobs import ProcessJobs
from controlplane.dialects.processes.schemas import (
    ProcessJobListPublic,
    ProcessJobPublic,
    ProcessListPublic,
    ProcessPublic,
    ProcessResultPublic,
)
from controlplane.dialects.processes.service import ProcessService
from controlplane.dialects.schemas import seed_json
from controlplane.services.platform import Platform

PREFIX = "/api/v1/processes"
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 405, 409, 413, 429, 503)
}
PARAMS_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "description": "The process parameters as a JSON object, plus report-type (HTML, CSV, XLS, PDF), "
        "is-summary, print-format-id, table-id or model-name, record-id; for jobs notification-type (E, N, B) "
        "and notification-email.",
        "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}},
    }
}
router = APIRouter(tags=["processes (seed 001)"], responses=ERRORS)


def get_processes(platform: PlatformDep) -> ProcessService:
    return ProcessService(platform.settings, platform.sessions, platform.automations, platform.runs)


def attach(platform: Platform) -> ProcessJobs:
    """The processes jobs of this platform, listening for their runs' ends from the platform's start."""
    return platform.extend(
        "processes.jobs",
        lambda p: ProcessJobs(p.settings, p.sessions, ProcessService(p.settings, p.sessions, p.automations, p.runs)),
    )


def get_jobs(platform: PlatformDep) -> ProcessJobs:
    return attach(platform)


ProcessesDep = Annotated[ProcessService, Depends(get_processes)]
JobsDep = Annotated[ProcessJobs, Depends(get_jobs)]
FilterQuery = Annotated[
    str | None,
    Query(alias="$filter", max_length=2000, description="OData filter on name, value, description."),
]


@router.get("", name="processes_list", response_model=ProcessListPublic)
async def list_processes(principal: PrincipalDep, processes: ProcessesDep, filter_: FilterQuery = None) -> JSONResponse:
    """The processes (automations) the caller sees."""
    return JSONResponse({"processes": seed_json(await processes.search(principal, filter_))})


@router.get("/jobs", name="processes_jobs", response_model=ProcessJobListPublic)
async def list_jobs(principal: PrincipalDep, jobs: JobsDep) -> JSONResponse:
    """The background jobs still queued or running."""
    return JSONResponse({"jobs": seed_json(await jobs.running(principal))})


@router.post("/jobs", name="processes_jobs_post", include_in_schema=False)
async def post_jobs(principal: PrincipalDep) -> JSONResponse:
    """/jobs is the jobs resource, not a process: 405."""
    raise MethodNotAllowed(
        "POST /api/v1/processes/jobs is not a process run; start a process named 'jobs' as a job with "
        "POST /api/v1/processes/jobs/jobs",
        title="Method Not Allowed",
        headers={"Allow": "GET"},
    )


@router.get("/jobs/{job_id}", name="processes_job", response_model=ProcessJobPublic)
async def get_job(job_id: str, principal: PrincipalDep, jobs: JobsDep) -> JSONResponse:
    """One job (an AD_PInstance record; with the process answer once it ended)."""
    return JSONResponse(seed_json(await jobs.get(principal, job_id)))


@router.post(
    "/jobs/{process_value}", name="processes_run_job", openapi_extra=PARAMS_BODY, response_model=ProcessJobPublic
)
async def run_job(process_value: str, request: Request, principal: PrincipalDep, jobs: JobsDep) -> JSONResponse:
    """Run the process in the background as a job: its scheduling information."""
    record = await jobs.submit(principal, process_value, await request.body())
    return JSONResponse(seed_json(record), headers={"Location": record.job_status})


@router.get("/{process_value}", name="processes_get", response_model=ProcessPublic)
async def get_process(process_value: str, principal: PrincipalDep, processes: ProcessesDep) -> JSONResponse:
    """One process with its parameters."""
    return JSONResponse(seed_json(await processes.get(principal, process_value)))


@router.post("/{process_value}", name="processes_run", openapi_extra=PARAMS_BODY, response_model=ProcessResultPublic)
async def run_process(
    process_value: str, request: Request, principal: PrincipalDep, processes: ProcessesDep
) -> JSONResponse:
    """Run the process and wait for it: AD_PInstance_ID, process, summary, isError, nodeId, logs, report, export."""
    return JSONResponse(seed_json(await processes.run(principal, process_value, await request.body())))
