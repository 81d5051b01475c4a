"""Seed 000's jobs over the platform's own runs and schedules (the /api/core/automations dialect's service).

A job is either a run (``/job``, ``/exec``: the job id is the run id) or a schedule (``/job?cron=``,
``/schedule``: the job id is the schedule id). Nothing here runs anything itself: runs go through
``RunService.submit`` and the engine, schedules through the scheduler, like every other surface's.

Job states (seed 000: Pending, Running, Succeeded, Failed) from run statuses: queued and starting are
Pending; running and must stop are Running; finished and finished with warnings are Succeeded; failed,
stopped, exceeded limit and not started are Failed. A schedule's state is its latest run's (Pending before
its first run).

``args`` (seed 000 shows both ``?args=arg1,arg2`` and ``?args=--action arg2 --action2 test``): given several
times, each ``args`` is one argument as it is; a single value holding whitespace is split like a POSIX
shell command line (quotes group, backslash escapes, nothing is expanded); any other single value is split
at commas (empty pieces dropped); ``?args=`` means no arguments; without ``args`` the automation's own
arguments apply.
"""

from __future__ import annotations

import shlex
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from controlplane.core import execargs
from controlplane.core.auth import Permission, Principal
from controlplane.core.errors import BadRequest, Code, NotFound, Unauthorized
from controlplane.core.filters import ListQuery
from controlplane.core.states import RunContext, RunMode, RunStatus
from controlplane.db.session import transaction
from controlplane.db.tables import Automation, Run, Schedule, utcnow
from controlplane.dialects.jobs.schemas import BrowsedAutomationPublic, BrowsedSchedulePublic, JobPublic, JobState
from controlplane.services.runs.surface import Surface
from controlplane.services.scheduling import ticks as schedules
from controlplane.store import jobs as store
from controlplane.store import runs as run_store
from controlplane.store import tenants as tenant_store

PREFIX = "/api/core/automations"
MAX_ARGS = 256
JOB_STATE: dict[RunStatus, JobState] = {
    RunStatus.QUEUED: "Pending",
    RunStatus.STARTING: "Pending",
    RunStatus.RUNNING: "Running",
    RunStatus.MUST_STOP: "Running",
    RunStatus.FINISHED: "Succeeded",
    RunStatus.FINISHED_WITH_WARNINGS: "Succeeded",
    RunStatus.FAILED: "Failed",
    RunStatus.STOPPED: "Failed",
    RunStatus.EXCEEDED_LIMIT: "Failed",
    RunStatus.NOT_STARTED: "Failed",
}


def parse_args(values: list[str] | None) -> list[str] | None:
    """The script's argv from the ``args`` query values (module doc); None keeps the automation's own."""
    if not values:
        return None
    if len(values) > 1:
        out = list(values)
    elif not values[0].strip():
        out = []
    elif any(c.isspace() for c in values[0]):
        try:
            out = shlex.split(values[0])
        except ValueError as exc:
            raise BadRequest(f"args: {exc}", code=Code.INVALID_ARGS) from None
    else:
        out = [part for part in values[0].split(",") if part]
    if len(out) > MAX_ARGS:
        raise BadRequest(f"at most {MAX_ARGS} arguments", code=Code.INVALID_ARGS)
    why = execargs.problem(out)
    if why:
        raise BadRequest(f"args: {why}", code=Code.INVALID_ARGS)
    return out


def request_host(header: str | None) -> str:
    """The host name of a Host header, lower case, without its port."""
    host = (header or "").strip().lower()
    if host.startswith("["):  # [::1]:8080
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def status_url(jobid: str) -> str:
    """Relative URL of a job's status (the dialect is mounted at PREFIX)."""
    return f"{PREFIX}/status/{jobid}"


class JobService(Surface):
    async def check_host(self, principal: Principal, host_header: str | None) -> None:
        """Seed 000: the token must match the host/tenant, other tokens are ignored. A Host that names a
        tenant (CP_TENANT_HOSTS, or a tenant's own name) other than the token's is refused with 401."""
        host = request_host(host_header)
        if not host or host == principal.tenant_name.lower():
            return
        named = {k.lower(): v for k, v in self.settings.tenant_hosts.items()}.get(host)
        if named is None:
            async with self.sessions() as s:
                tenant = await tenant_store.get_tenant_by_name(s, host)
            named = tenant.name if tenant is not None else None
        if named is not None and named != principal.tenant_name:
            raise Unauthorized(
                f"the token does not belong to the tenant of host {host!r}", code=Code.TOKEN_HOST_MISMATCH
            )

    async def _automation(self, s: AsyncSession, principal: Principal, name: str, permission: Permission) -> Automation:
        """Automation ``name``: one 404 for a missing name and for one in a space the caller does not see (same
        code and message, so neither its existence nor its id can be probed)."""
        missing = NotFound(f"no automation named {name!r}", code=Code.AUTOMATION_NOT_FOUND)
        lock = permission == Permission.WRITE
        return await self.runs.find_automation(s, principal, name, permission, missing=missing, by_id=False, lock=lock)

    async def start(
        self,
        principal: Principal,
        name: str,
        *,
        args: list[str] | None,
        input_data: bytes,
        content_type: str | None,
        wait: bool,
    ) -> Run:
        """A run of automation ``name``: in the background (``/job``), or synchronously and waited for (``/exec``)."""
        async with self.sessions() as s:
            automation = await self._automation(s, principal, name, Permission.RUN)
        return await self.runs.run_and_collect(
            principal,
            automation.id,
            context=RunContext.API_SYNC if wait else RunContext.API_ASYNC,
            args=args,
            input_data=input_data,
            input_content_type=content_type if input_data else None,
        )

    async def schedule(self, principal: Principal, name: str, *, cron: str, timezone: str) -> Schedule:
        """Add a cron schedule to automation ``name`` (changing an automation needs the developer role). The
        same cron and time zone again returns the schedule it already has."""
        schedules.check_cron(cron)
        schedules.zone(timezone)
        async with transaction(self.sessions) as s:
            automation = await self._automation(s, principal, name, Permission.WRITE)
            found = await store.find_schedule(s, automation.id, cron=cron, timezone=timezone)
            if found is not None:
                return found
            now = utcnow()
            nxt = schedules.next_fire(cron=cron, interval=None, tz=timezone, start_at=None, stop_at=None, after=now)
            row = await store.append_schedule(s, automation, Schedule(cron=cron, timezone=timezone, next_run_at=nxt))
            if automation.run_mode == RunMode.MANUAL.value:
                automation.run_mode = RunMode.SCHEDULED.value
            automation.updated_at = now
            return row

    async def status(self, principal: Principal, jobid: str) -> JobPublic:
        principal.require(Permission.READ)
        async with self.sessions() as s:
            run = await run_store.get(s, principal.tenant_id, jobid)
            if run is not None:
                await self.automations.load(s, principal, run.automation_id, Permission.READ)
                return await self._job(s, run.id, run)
            sched = await store.get_schedule(s, principal.tenant_id, jobid)
            if sched is None:
                raise NotFound(f"no job {jobid!r}", code=Code.JOB_NOT_FOUND)
            automation = await self.automations.load(s, principal, sched.automation_id, Permission.READ)
            last = await store.latest_run_of_schedule(s, sched.id)
            job = await self._job(s, sched.id, last)
            return JobPublic(
                **job.model_dump(include={"jobid", "jobstatus", "jobstate", "exit_code", "stdout", "stderr"}),
                automation=automation.name,
                cron=sched.cron,
                timezone=sched.timezone,
                next_run_at=_iso(sched.next_run_at),
                last_run_at=_iso(sched.last_started_at),
                last_jobid=last.id if last is not None else None,
            )

    async def _job(self, s: AsyncSession, jobid: str, run: Run | None) -> JobPublic:
        if run is None:
            return JobPublic(
                jobid=jobid, jobstatus=status_url(jobid), jobstate="Pending", exit_code="", stdout="", stderr=""
            )
        out, _ = await run_store.read_log(s, run.id, "stdout")
        err, _ = await run_store.read_log(s, run.id, "stderr")
        return JobPublic(
            jobid=jobid,
            jobstatus=status_url(jobid),
            jobstate=JOB_STATE[RunStatus(run.status)],
            exit_code="" if run.exit_code is None else str(run.exit_code),
            stdout=out.decode("utf-8", errors="replace"),
            stderr=err.decode("utf-8", errors="replace"),
            status=run.status,
            error=run.errors or [],
        )

    async def browse(self, principal: Principal) -> list[BrowsedAutomationPublic]:
        """Every automation of the tenant (seed 000: role sys_administrator, i.e. admin)."""
        principal.require(Permission.ADMIN)
        out: list[BrowsedAutomationPublic] = []
        cursor: str | None = None
        while True:
            query = ListQuery(sort="+name", limit=100, cursor=cursor)
            items, page = await self.automations.search(principal, query, list_all=True)
            for a in items:
                out.append(
                    BrowsedAutomationPublic(
                        name=a.name,
                        id=a.id,
                        description=a.description,
                        state=a.state.value,
                        run_mode=a.run_mode.value,
                        last_jobid=a.last_run.id if a.last_run is not None else None,
                        last_jobstate=JOB_STATE[a.last_run.status] if a.last_run is not None else None,
                        last_run_at=_iso(a.last_run_at),
                        schedules=[
                            BrowsedSchedulePublic(
                                jobid=x.id, cron=x.cron, timezone=x.timezone, next_run_at=_iso(x.next_run_at)
                            )
                            for x in a.schedules
                            if x.cron is not None
                        ],
                    )
                )
            if page.next is None:
                return out
            cursor = page.next.encode()


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None
