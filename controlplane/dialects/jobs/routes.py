"""Seed 000's automations module, mounted at /api/core/automations: a thin translation over dialects/jobs/service.py.

Every path answers GET and POST alike (the seed: "works with GET/POST"); answers are ``{"data": {...}}``:

* ``/job/{name}``: start automation ``name`` (``A000-run-test``) in the background -> ``jobid`` (the run's
  id), ``jobstatus`` (relative URL of its status), ``jobstate``. With ``cron`` it is scheduled instead (as
  ``/schedule``). ``args``: the script's arguments (rule in dialects/jobs/service.py). A POST body is the run's input.
* ``/exec/{name}``: run it and wait for the result -> jobid, jobstatus, jobstate, exitCode, stdout, stderr
  (a synchronous run: its deadline is the automation's timeoutSeconds or CP_SYNC_TIMEOUT_SECONDS).
* ``/schedule/{name}?cron=...`` (optional ``timezone``, default UTC): add a cron schedule -> jobid (the
  schedule's id), jobstatus, jobstate, cron, timezone, nextRunAt. Scheduled runs use the automation's own
  arguments, so ``args`` together with ``cron`` is refused (400).
* ``/status/{jobid}``: jobstate (Pending, Running, Succeeded, Failed), exitCode (a string, "" while there is
  none), stdout, stderr; for a schedule its latest run's, plus cron and nextRunAt.
* ``/browse``: every automation of the tenant (admin; seed 000's sys_administrator) as ``{"data": [...]}``.

Status codes: 200; 400 bad args (unbalanced quotes, over 256), no cron on /schedule, args with cron; 401 no
or bad token, or a token of another tenant than the one the Host header names (seed 000: "token must match
host/tenant", CP_TENANT_HOSTS); 403 role (runs: operator; schedules: developer; browse: admin); 404 no such
automation or job; 405 another method; 409 automation disabled; 413 body too large; 422 invalid cron or
time zone; 429 too many runs in flight (Retry-After). Errors are the native envelope
``{"errors": [...], "traceId"}`` (the seed names none).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from controlplane.api.deps import PlatformDep, get_principal
from controlplane.core.auth import Principal
from controlplane.core.errors import BadRequest, Code
from controlplane.core.schemas.wire import ErrorBody
from controlplane.dialects.jobs.schemas import BrowsedAutomationPublic, DataPublic, JobPublic
from controlplane.dialects.jobs.service import PREFIX, JobService, parse_args, status_url
from controlplane.dialects.schemas import seed_json

__all__ = ["PREFIX", "router"]  # what main.py mounts, and where
METHODS = ["GET", "POST"]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 422, 429, 503)
}
router = APIRouter(tags=["core automations (seed 000)"], responses=ERRORS)

ArgsQuery = Annotated[
    list[str] | None,
    Query(description="Script arguments: ?args=a,b or ?args=--action a --action2 b (or args repeated, one each)."),
]
CronQuery = Annotated[str | None, Query(max_length=128, description="5-field cron expression: schedule instead.")]
ZoneQuery = Annotated[str, Query(max_length=64, description="Time zone of the cron expression.")]


@dataclass(frozen=True)
class JobQuery:
    """The query every starting path takes: the script's args, or a cron (and its zone) to schedule instead."""

    args: list[str] | None
    cron: str | None
    timezone: str


def job_query(args: ArgsQuery = None, cron: CronQuery = None, timezone: ZoneQuery = "UTC") -> JobQuery:
    return JobQuery(args, cron, timezone)


QueryDep = Annotated[JobQuery, Depends(job_query)]


def get_jobs(platform: PlatformDep) -> JobService:
    return JobService(platform.settings, platform.sessions, platform.automations, platform.runs)


JobsDep = Annotated[JobService, Depends(get_jobs)]


async def host_principal(request: Request, platform: PlatformDep, jobs: JobsDep) -> Principal:
    principal = await get_principal(request, platform)
    await jobs.check_host(principal, request.headers.get("host"))
    return principal


CorePrincipal = Annotated[Principal, Depends(host_principal)]


def data(payload: JobPublic | list[BrowsedAutomationPublic]) -> JSONResponse:
    return JSONResponse({"data": seed_json(payload)})


async def _schedule(jobs: JobService, principal: Principal, name: str, cron: str, timezone: str) -> JSONResponse:
    """The schedule's answer: its status without the latest run's exit code and output."""
    sched = await jobs.schedule(principal, name, cron=" ".join(cron.split()), timezone=timezone)
    job = await jobs.status(principal, sched.id)
    return data(JobPublic(**job.model_dump(exclude={"exit_code", "stdout", "stderr"}, exclude_unset=True)))


async def _input(request: Request) -> tuple[bytes, str | None]:
    if request.method != "POST":
        return b"", None
    return await request.body(), request.headers.get("content-type")


async def _start(
    jobs: JobService,
    principal: Principal,
    request: Request,
    name: str,
    query: JobQuery,
    *,
    wait: bool,
) -> JSONResponse:
    """/job and /exec: start automation ``name`` (waiting for its end when ``wait``), or schedule it with
    ``cron``."""
    argv = parse_args(query.args)
    if query.cron is not None:
        if argv is not None:
            raise BadRequest(
                "scheduled runs use the automation's own args; drop args or cron", code=Code.ARGS_WITH_CRON
            )
        return await _schedule(jobs, principal, name, query.cron, query.timezone)
    body, ctype = await _input(request)
    run = await jobs.start(principal, name, args=argv, input_data=body, content_type=ctype, wait=wait)
    if wait:
        return data(await jobs.status(principal, run.id))
    return data(JobPublic(jobid=run.id, jobstatus=status_url(run.id), jobstate="Pending"))


def _starter(name: str, wait: bool, doc: str) -> Callable[..., Awaitable[JSONResponse]]:
    """/job and /exec share one signature and differ in waiting: one route function made for each."""

    async def start(
        name: str, request: Request, principal: CorePrincipal, jobs: JobsDep, query: QueryDep
    ) -> JSONResponse:
        return await _start(jobs, principal, request, name, query, wait=wait)

    start.__name__, start.__doc__ = name, doc
    return start


job = _starter("job", False, "Start automation ``name`` as a background job (or schedule it with ``cron``).")
exec_ = _starter(
    "exec_", True, "Run automation ``name`` and wait for its result (testing, debugging; or schedule it with ``cron``)."
)


async def schedule(name: str, principal: CorePrincipal, jobs: JobsDep, query: QueryDep) -> JSONResponse:
    """Add a cron schedule to automation ``name``."""
    if query.cron is None or not query.cron.strip():
        raise BadRequest("give the schedule as ?cron=<5-field cron expression>", code=Code.CRON_REQUIRED)
    if parse_args(query.args) is not None:
        raise BadRequest("scheduled runs use the automation's own args; drop args", code=Code.ARGS_WITH_CRON)
    return await _schedule(jobs, principal, name, query.cron.strip(), query.timezone)


async def status(jobid: str, principal: CorePrincipal, jobs: JobsDep) -> JSONResponse:
    """The state, exit code and output of a job (a run, or a schedule's latest run)."""
    return data(await jobs.status(principal, jobid))


async def browse(principal: CorePrincipal, jobs: JobsDep) -> JSONResponse:
    """Every automation of the tenant (sys_administrator)."""
    return data(await jobs.browse(principal))


for _method in METHODS:  # one route per method, so each has its own OpenAPI operation id
    for _path, _endpoint, _answer in (
        ("/job/{name}", job, DataPublic[JobPublic]),
        ("/exec/{name}", exec_, DataPublic[JobPublic]),
        ("/schedule/{name}", schedule, DataPublic[JobPublic]),
        ("/status/{jobid}", status, DataPublic[JobPublic]),
        ("/browse", browse, DataPublic[list[BrowsedAutomationPublic]]),
    ):
        router.add_api_route(
            _path,
            _endpoint,
            methods=[_method],
            name=f"core_{_endpoint.__name__.rstrip('_')}_{_method.lower()}",
            response_model=_answer,
        )
