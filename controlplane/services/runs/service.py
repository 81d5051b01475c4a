"""Runs as API clients see them: submit, read, list, logs (stored or followed live) and artifacts.

Submitting commits the run row (status queued) before anything else happens; only then does the engine
get it. A synchronous caller waits on the engine; the run itself never depends on the caller staying.

An automation's runs are seen by whoever sees the automation (services/tenancy/spaces.py): every method
here checks it, so no caller can forget to — 404 for an automation the caller may not see, 403 when their
space role does not allow what they ask (read, or run for submit, stop, retry and export).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, TypedDict, Unpack

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.core import metrics
from controlplane.core.auth import Permission, Principal
from controlplane.core.clock import SYSTEM_CLOCK, Clock
from controlplane.core.errors import BadRequest, Code, Conflict, NotFound, PayloadTooLarge
from controlplane.core.filters import ListQuery
from controlplane.core.schemas.runs import RunPublic
from controlplane.core.settings import Settings
from controlplane.core.states import TERMINAL, AutomationState, ErrorCode, Role, RunContext, RunStatus
from controlplane.db.session import transaction
from controlplane.db.tables import Artifact, Automation, RuleRun, Run
from controlplane.services.automations import parameters
from controlplane.services.execution import admission
from controlplane.services.execution.engine import RunEngine
from controlplane.services.runs import views
from controlplane.services.runs.views import STREAMS
from controlplane.services.tenancy.spaces import SpaceService, automation_missing
from controlplane.store import automations as automation_store
from controlplane.store import runs as store
from controlplane.store.query import PageResult


def encode_input(value: Any) -> bytes:
    return b"" if value is None else json.dumps(value).encode()


class RunInputs(TypedDict, total=False):
    """What a dialect gives a run besides its automation and context (submit's defaults otherwise)."""

    args: list[str] | None
    input_data: bytes
    input_content_type: str | None
    title: str


class RunService:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        engine: RunEngine,
        *,
        on_queued: Callable[[], None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.engine = engine
        self.on_queued = on_queued
        self.clock = clock  # admission's now (how long the holders have run)
        self.spaces = SpaceService(sessions)

    # --- commands -----------------------------------------------------------------------------------

    async def submit(
        self,
        principal: Principal,
        automation_id: str,
        *,
        context: RunContext,
        args: list[str] | None = None,
        input_data: bytes = b"",
        input_content_type: str | None = None,
        title: str = "",
        retry_of: str | None = None,
        automation_version: int | None = None,
        schedule_id: str | None = None,
        scheduled_start_time: datetime | None = None,
        started_by_rule: tuple[int, int] | None = None,
    ) -> Run:
        """Record a run (queued) and hand it to the engine. ``automation_version`` pins a version (retry);
        ``schedule_id``/``scheduled_start_time`` mark a scheduled run; ``started_by_rule`` (rule id, depth)
        a run an automation rule started. Raises QuotaExceeded (429) when the tenant's synchronous slots or
        its queue are full."""
        principal.require(Permission.RUN)
        if len(input_data) > self.settings.input_max_bytes:
            raise PayloadTooLarge(f"the run's input is above {self.settings.input_max_bytes} bytes")
        synchronous = context.synchronous
        async with transaction(self.sessions) as s:
            tenant = await admission.lock_tenant(s, principal.tenant_id)  # serialises this tenant's admissions
            automation = await self._automation(s, principal, automation_id, Permission.RUN)
            if automation.state == AutomationState.DISABLED.value:
                raise Conflict("the automation is disabled; enable it to run it", code=Code.AUTOMATION_DISABLED)
            if automation.parameters:  # typed parameters: 400 listing every problem, defaults filled in
                input_data = parameters.validate_input(automation.parameters, input_data)
                input_content_type = "application/json"
            now = self.clock.now()
            if synchronous:
                await admission.admit_sync(s, self.settings, tenant, automation, now)
            else:
                await admission.admit_background(s, self.settings, tenant, now)
            timeout = automation.timeout_seconds or (
                self.settings.sync_timeout_seconds if synchronous else self.settings.background_timeout_seconds
            )
            run = Run(
                tenant_id=principal.tenant_id,
                automation_id=automation.id,
                automation_version=automation_version or automation.version,
                status=RunStatus.QUEUED.value,
                context=context.value,
                synchronous=synchronous,
                claimed_by=self.engine.replica_id if synchronous else None,
                title=title or automation.name,
                args=list(automation.args or []) if args is None else [str(a) for a in args],
                input=input_data,
                input_content_type=input_content_type,
                timeout_seconds=int(timeout),
                executed_by_id=principal.user_id,
                owner_id=automation.owner_id,
                space_id=automation.space_id,
                retry_of=retry_of,
                schedule_id=schedule_id,
                scheduled_start_time=scheduled_start_time,
                is_test_run=context == RunContext.TEST_RUN,
                metrics={},
                errors=[],
            )
            s.add(run)
            await s.flush()
            if started_by_rule is not None:  # with the run, so its end already knows its depth (loop cut)
                s.add(RuleRun(run_id=run.id, rule_id=started_by_rule[0], depth=started_by_rule[1]))
            await store.point_last_run(s, run)
        metrics.RUNS_CREATED.labels(principal.tenant_name, context.value).inc()
        if synchronous:
            self.engine.dispatch(run.id)
        elif self.on_queued is not None:
            self.on_queued()
        return run

    async def stop(self, principal: Principal, automation_id: str, run_id: str) -> None:
        """Seed 004's stop: a queued run is cancelled (stopped, never started); a starting or running one
        goes 'must stop', its sandbox is killed and removed, its partial logs kept, then 'stopped'.
        Stopping twice is fine; stopping a run that already ended is a 409."""
        principal.require(Permission.RUN)
        entry = {
            "code": ErrorCode.STOPPED_BY_USER.value,
            "title": "The run was stopped",
            "detail": f"by {principal.user_id}",
        }
        for _ in range(5):  # a queued run may be claimed between our read and our write: read again
            async with transaction(self.sessions) as s:
                run = await self._load(s, principal, automation_id, run_id, Permission.RUN)
                status = RunStatus(run.status)
                if status in TERMINAL:
                    raise Conflict(
                        f"the run already ended ({status.value}); there is nothing to stop", code=Code.RUN_ENDED
                    )
                if status in (RunStatus.STARTING, RunStatus.RUNNING):
                    if not await store.move(s, run_id, status, RunStatus.MUST_STOP):
                        continue
            if status == RunStatus.QUEUED:
                if await self.engine.end_unstarted(run_id, RunStatus.STOPPED, entry):
                    return
                continue
            self.engine.request_stop(run_id)  # here when this replica runs it; otherwise its owner polls
            return
        raise Conflict("the run changed state while being stopped; try again", code=Code.RUN_BUSY)

    async def retry(self, principal: Principal, automation_id: str, run_id: str) -> Run:
        """Seed 004's retry: a new run of the same automation version with the same args and input,
        linked to the original (retryOf), context retry."""
        principal.require(Permission.RUN)
        async with self.sessions() as s:
            original = await self._load(s, principal, automation_id, run_id, Permission.RUN)
        return await self.submit(
            principal,
            automation_id,
            context=RunContext.RETRY,
            args=list(original.args or []),
            input_data=original.input or b"",
            input_content_type=original.input_content_type,
            title=original.title,
            retry_of=original.id,
            automation_version=original.automation_version,
        )

    async def wait(self, run: Run) -> None:
        """Wait for a synchronous run: its own deadline bounds the wait (plus time to clean up)."""
        await self.engine.wait(run.id, timeout=run.timeout_seconds + 30)

    async def run_and_collect(
        self, principal: Principal, automation_id: str, *, context: RunContext, **given: Unpack[RunInputs]
    ) -> Run:
        """The dialects' one path to a run: submit it; a synchronous one is waited for and returned as its end
        recorded it (status, exit code, errors, read afresh), a background one as queued."""
        run = await self.submit(principal, automation_id, context=context, **given)
        if not context.synchronous:
            return run
        await self.wait(run)
        async with self.sessions() as s:
            return await store.get(s, principal.tenant_id, run.id) or run

    async def seen(
        self, s: AsyncSession, principal: Principal, automation_id: str, permission: Permission, *, lock: bool = False
    ) -> Automation | None:
        """The automation when the caller sees it, None when it is missing or hidden from them (a visible one
        they may not act on with ``permission`` is still a 403)."""
        try:
            return await self.spaces.automation(s, principal, automation_id, permission, lock=lock)
        except NotFound:
            return None

    async def find_automation(
        self,
        s: AsyncSession,
        principal: Principal,
        key: str,
        permission: Permission,
        *,
        missing: NotFound,
        by_id: bool = True,
        lock: bool = False,
    ) -> Automation:
        """The automation a dialect names by ``key``: its id (when ``by_id``), else its name. One 404,
        ``missing``, for a key that names nothing and for one the caller may not see, so that neither an
        automation's existence nor its id can be probed."""
        principal.require(permission)
        if by_id and (found := await self.seen(s, principal, key, permission, lock=lock)) is not None:
            return found
        row = await automation_store.get_by_name(s, principal.tenant_id, key)
        if row is not None and (found := await self.seen(s, principal, row.id, permission, lock=lock)) is not None:
            return found
        raise missing

    # --- queries ------------------------------------------------------------------------------------

    async def _automation(
        self, s: AsyncSession, principal: Principal, automation_id: str, permission: Permission
    ) -> Automation:
        """The automation, when the caller may act on its runs with ``permission``; tenant admins see the
        whole tenant, so for them there is no space to check (and no query to pay)."""
        if principal.role != Role.ADMIN:
            return await self.spaces.automation(s, principal, automation_id, permission)
        automation = await automation_store.get(s, principal.tenant_id, automation_id)
        if automation is None:
            raise automation_missing(automation_id)
        return automation

    async def _load(
        self, s: AsyncSession, principal: Principal, automation_id: str, run_id: str, permission: Permission
    ) -> Run:
        principal.require(permission)
        if principal.role != Role.ADMIN:
            await self.spaces.automation(s, principal, automation_id, permission)
        run = await store.get(s, principal.tenant_id, run_id)
        if run is None or run.automation_id != automation_id:
            raise NotFound(f"run {run_id} does not exist")
        return run

    async def get(self, principal: Principal, automation_id: str, run_id: str, *, base_url: str) -> RunPublic:
        async with self.sessions() as s:
            run = await self._load(s, principal, automation_id, run_id, Permission.READ)
            return await self.public(s, run, base_url=base_url)

    async def require(self, principal: Principal, automation_id: str, run_id: str, permission: Permission) -> None:
        """404 unless the run exists and the caller sees it; 403 unless they may act on it with ``permission``."""
        async with self.sessions() as s:
            await self._load(s, principal, automation_id, run_id, permission)

    async def search(
        self,
        principal: Principal,
        automation_id: str,
        query: ListQuery,
        *,
        base_url: str,
    ) -> tuple[list[RunPublic], PageResult]:
        principal.require(Permission.READ)
        asked = query.parse(store.FILTER_COLUMNS, store.SORT_COLUMNS, "-createdAt")
        async with self.sessions() as s:
            await self._automation(s, principal, automation_id, Permission.READ)
            page = await store.list_page(s, principal.tenant_id, automation_id, asked)
            return [await self.public(s, r, base_url=base_url, inline=False) for r in page.rows], page

    async def public(self, s: AsyncSession, run: Run, *, base_url: str, inline: bool = True) -> RunPublic:
        return await views.public(s, self.settings, run, base_url=base_url, inline=inline)

    # --- logs and artifacts -------------------------------------------------------------------------

    async def read_log(self, principal: Principal, automation_id: str, run_id: str, stream: str) -> bytes:
        principal.require(Permission.READ)
        if stream not in STREAMS:
            raise BadRequest("stream must be stdout or stderr", code=Code.INVALID_STREAM)
        async with self.sessions() as s:
            await self._load(s, principal, automation_id, run_id, Permission.READ)
            data, _ = await store.read_log(s, run_id, stream)
            return data

    async def follow_log(
        self, principal: Principal, automation_id: str, run_id: str, stream: str
    ) -> AsyncIterator[bytes]:
        """Check access now (so errors are proper responses), then stream chunks until the run is final."""
        principal.require(Permission.READ)
        if stream not in STREAMS:
            raise BadRequest("stream must be stdout or stderr", code=Code.INVALID_STREAM)
        async with self.sessions() as s:
            await self._load(s, principal, automation_id, run_id, Permission.READ)
        return views.follow(self.sessions, run_id, stream)

    async def artifact(self, principal: Principal, automation_id: str, run_id: str, path: str) -> Artifact:
        principal.require(Permission.READ)
        async with self.sessions() as s:
            await self._load(s, principal, automation_id, run_id, Permission.READ)
            art = await store.get_artifact(s, run_id, path)
            if art is None:
                raise NotFound(f"run {run_id} has no artifact {path!r}")
            return art
