"""Automations: create, read, update, delete, with every rule a stored automation must satisfy.

An automation's runnable part (runtime, files, entrypoint, args, env, timeout, resources, network) is
frozen into a numbered version whenever it changes; runs execute a version, so editing an automation never
changes what a queued run or a retry executes. Who sees and may change which automation is decided by
services/tenancy/spaces.py; the seed-004 actions beyond enable/disable live in services/automations/actions.py.
"""

from __future__ import annotations

import secrets

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.core.auth import Permission, Principal
from controlplane.core.errors import Code, Conflict, Forbidden, NotFound
from controlplane.core.filters import ListQuery
from controlplane.core.schemas.automations import (
    AutomationCreate,
    AutomationPublic,
    AutomationUpdate,
    ParameterPublic,
    ResourcesPublic,
    RunSummaryPublic,
    SchedulePublic,
)
from controlplane.core.schemas.runs import NetworkMetricsPublic, RunMetricsPublic
from controlplane.core.settings import Settings
from controlplane.core.states import ACTIVE, AutomationState, RunMode, RunStatus, Runtime
from controlplane.db.session import transaction
from controlplane.db.tables import Automation, Run, Schedule, utcnow
from controlplane.services.automations import body as body_rules
from controlplane.services.automations import limits
from controlplane.services.automations.body import DEFAULT_MAX_CONCURRENT
from controlplane.services.events import hooks as run_hooks
from controlplane.services.events.hooks import EventKind
from controlplane.services.scheduling import ticks as schedules
from controlplane.services.tenancy.spaces import SpaceService, View
from controlplane.store import automations as store
from controlplane.store import runs as run_store
from controlplane.store import tenants as tenant_store
from controlplane.store.query import PageResult


def new_execution_token() -> str:
    """64 URL-safe characters (384 random bits), like seed 004's example executionToken."""
    return secrets.token_urlsafe(48)


def duration_seconds(run: Run | None) -> int | None:
    if run is None or run.start_time is None or run.stop_time is None:
        return None
    return round((run.stop_time - run.start_time).total_seconds())


def _seconds(value: float | None) -> int | None:
    """The last run's duration kept on the automation (its run may be gone: retention)."""
    return None if value is None else round(value)


def run_metrics(run: Run) -> RunMetricsPublic:
    """Seed 004's run metrics from what the engine measured (container counters) and counted (API calls)."""
    m = run.metrics or {}
    net = m.get("network", {})
    return RunMetricsPublic(
        network=NetworkMetricsPublic(rx_bytes=int(net.get("rxBytes", 0)), tx_bytes=int(net.get("txBytes", 0))),
        total_api_calls=run.api_calls or 0,  # requests made with the run's own token
        cpu_seconds=float(m.get("cpuSeconds", 0.0)),
        memory_peak_bytes=int(m.get("memoryPeakBytes", 0)),
    )


def run_summary(run: Run) -> RunSummaryPublic:
    return RunSummaryPublic(
        id=run.id,
        status=RunStatus(run.status),
        context=run.context,
        title=run.title,
        error=run.errors or [],
        metrics=run_metrics(run),
        exit_code=run.exit_code,
        owner_id=run.owner_id,
        space_id=run.space_id,
        test_run=run.is_test_run,
        is_test_run=run.is_test_run,
        archived=run.archived,
        is_archived=run.archived,
        created_at=run.created_at,
        updated_at=run.updated_at,
        start_time=run.start_time,
        stop_time=run.stop_time,
        scheduled_start_time=run.scheduled_start_time,
        duration=duration_seconds(run),
        executed_by_id=run.executed_by_id,
    )


class AutomationService:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.spaces = SpaceService(sessions)

    # --- queries ------------------------------------------------------------------------------------

    async def load(
        self,
        s: AsyncSession,
        principal: Principal,
        automation_id: str,
        permission: Permission = Permission.READ,
        *,
        lock: bool = False,
    ) -> Automation:
        """An automation the caller may act on with ``permission``: 404 when missing or not visible to them,
        403 when visible but their roles do not allow it."""
        return await self.spaces.automation(s, principal, automation_id, permission, lock=lock)

    async def get(self, principal: Principal, automation_id: str) -> AutomationPublic:
        async with self.sessions() as s:
            row = await self.load(s, principal, automation_id)
            return (await self._public(s, principal, [row], include_files=True))[0]

    async def search(
        self,
        principal: Principal,
        query: ListQuery,
        *,
        list_all: bool = False,
    ) -> tuple[list[AutomationPublic], PageResult]:
        """The automations the caller sees (their spaces, the default space, their own); ``list_all``:
        every automation of the tenant, for admins only (403 otherwise, as seed 004 restricts it)."""
        principal.require(Permission.READ)
        if list_all and not principal.can(Permission.ADMIN):
            raise Forbidden("listAll is restricted to tenant admins")
        asked = query.parse(store.FILTER_COLUMNS, store.SORT_COLUMNS, "-createdAt")
        async with self.sessions() as s:
            view = await self.spaces.view(s, principal)
            visible_to = None if list_all else (principal.user_id, view.visible_spaces())
            page = await store.list_page(s, principal.tenant_id, asked, visible_to=visible_to)
            return await self._public(s, principal, page.rows, include_files=False), page

    async def _public(
        self, s: AsyncSession, principal: Principal, rows: list[Automation], *, include_files: bool
    ) -> list[AutomationPublic]:
        scheds = await store.schedules_of(s, [r.id for r in rows])
        view: View = await self.spaces.view(s, principal)
        tenant = await tenant_store.get_tenant(s, principal.tenant_id)
        tenant_settings = tenant.settings if tenant else {}
        out = []
        for row in rows:
            last = await run_store.get_any(s, row.last_run_id) if row.last_run_id else None
            eff = limits.effective(self.settings, tenant_settings, row.resources or {})
            out.append(
                AutomationPublic(
                    id=row.id,
                    name=row.name,
                    description=row.description,
                    state=AutomationState(row.state),
                    run_mode=RunMode(row.run_mode),
                    owner_id=row.owner_id,
                    space_id=row.space_id or view.default_id,
                    created_at=row.created_at,
                    updated_at=row.updated_at,
                    last_run=run_summary(last) if last else None,
                    last_run_at=row.last_run_at,
                    last_run_status=RunStatus(row.last_run_status) if row.last_run_status else None,
                    duration=duration_seconds(last) if last else _seconds(row.last_run_duration),
                    max_concurrent_runs=row.max_concurrent_runs,
                    schedules=[_schedule_public(x) for x in scheds.get(row.id, [])],
                    # the token lets anyone start runs: only those who may run the automation see it
                    execution_token=row.execution_token if Permission.RUN in view.grants_on(row) else None,
                    workspace=row.workspace or {},
                    runtime=Runtime(row.runtime),
                    entrypoint=row.entrypoint,
                    files=dict(row.files) if include_files else None,
                    args=list(row.args or []),
                    env=dict(row.env or {}),
                    timeout_seconds=row.timeout_seconds,
                    resources=ResourcesPublic(cpus=eff.cpus, memory_mb=eff.memory_mb, pids=eff.pids),
                    network=row.network,
                    version=row.version,
                    parameters=[ParameterPublic.model_validate(p) for p in row.parameters or []],
                )
            )
        return out

    # --- commands -----------------------------------------------------------------------------------

    async def create(self, principal: Principal, body: AutomationCreate, *, source: str = "api") -> AutomationPublic:
        principal.require(Permission.WRITE)
        try:
            async with transaction(self.sessions) as s:
                if await store.get_by_name(s, principal.tenant_id, body.name):
                    raise Conflict(f"an automation named {body.name!r} already exists", code=Code.NAME_TAKEN)
                tenant = await tenant_store.get_tenant(s, principal.tenant_id)
                tenant_settings = tenant.settings if tenant else {}
                row = Automation(
                    tenant_id=principal.tenant_id,
                    name=body.name,
                    owner_id=principal.user_id,
                    space_id=await self.spaces.target(s, principal, body.space_id),
                    execution_token=new_execution_token(),
                    source=source,
                    version=1,
                )
                body_rules.apply(
                    self.settings, row, body, body.model_fields_set | {"runtime"}, tenant_settings, creating=True
                )
                s.add(row)
                await s.flush()
                await store.add_version(s, row, body_rules.spec_of(row))
                await store.replace_schedules(s, row, body_rules.schedules_of(body))
                automation_id = row.id
        except IntegrityError as exc:
            raise Conflict(f"an automation named {body.name!r} already exists", code=Code.NAME_TAKEN) from exc
        run_hooks.publish(
            run_hooks.Event(EventKind.AUTOMATION_CREATED, principal.tenant_id, automation_id, self.sessions)
        )
        return await self.get(principal, automation_id)

    async def update(self, principal: Principal, automation_id: str, body: AutomationUpdate) -> AutomationPublic:
        try:
            async with transaction(self.sessions) as s:
                row = await self.load(s, principal, automation_id, Permission.WRITE, lock=True)
                name = row.name if body.name is None else body.name  # seed 004: name is optional on PUT
                if name != row.name and await store.get_by_name(s, principal.tenant_id, name):
                    raise Conflict(f"an automation named {name!r} already exists", code=Code.NAME_TAKEN)
                tenant = await tenant_store.get_tenant(s, principal.tenant_id)
                before_spec, before_all = body_rules.spec_of(row), body_rules.snapshot(row)
                if "space_id" in body.model_fields_set and body.space_id != row.space_id:
                    row.space_id = await self.spaces.target(s, principal, body.space_id)
                body_rules.apply(
                    self.settings, row, body, body.model_fields_set, tenant.settings if tenant else {}, creating=False
                )
                row.name = name
                changed = body_rules.snapshot(row) != before_all
                if body_rules.spec_of(row) != before_spec:
                    row.version += 1
                    await store.add_version(s, row, body_rules.spec_of(row))
                if "schedules" in body.model_fields_set:
                    current = (await store.schedules_of(s, [row.id]))[row.id]
                    wanted = body_rules.schedules_of(body)
                    if [body_rules.schedule_key(x) for x in current] != [body_rules.schedule_key(x) for x in wanted]:
                        await store.replace_schedules(s, row, wanted)
                        changed = True
                if changed:
                    row.updated_at = utcnow()
        except IntegrityError as exc:
            raise Conflict(f"an automation named {body.name!r} already exists", code=Code.NAME_TAKEN) from exc
        if changed:
            run_hooks.publish(
                run_hooks.Event(EventKind.AUTOMATION_UPDATED, principal.tenant_id, automation_id, self.sessions)
            )
        return await self.get(principal, automation_id)

    async def set_state(self, principal: Principal, automation_id: str, state: AutomationState) -> None:
        """enable/disable (seed 004 actions): a disabled automation refuses runs and its schedules fire nothing;
        enabling it again does not fire the ticks it missed (their next run is computed from now)."""
        async with transaction(self.sessions) as s:
            row = await self.load(s, principal, automation_id, Permission.WRITE, lock=True)
            if row.state == state.value:
                return
            row.state = state.value
            row.updated_at = utcnow()
            if state == AutomationState.AVAILABLE:
                now = utcnow()
                for sched in (await store.schedules_of(s, [row.id]))[row.id]:
                    sched.next_run_at = schedules.next_fire(
                        cron=sched.cron,
                        interval=sched.interval,
                        tz=sched.timezone,
                        start_at=sched.start_at,
                        stop_at=sched.stop_at,
                        after=now,
                    )
        kind = EventKind.AUTOMATION_ENABLED if state == AutomationState.AVAILABLE else EventKind.AUTOMATION_DISABLED
        run_hooks.publish(run_hooks.Event(kind, principal.tenant_id, automation_id, self.sessions))

    async def get_settings(self, principal: Principal) -> dict[str, int]:
        principal.require(Permission.ADMIN)
        async with self.sessions() as s:
            tenant = await tenant_store.get_tenant(s, principal.tenant_id)
            value = (
                (tenant.settings or {}).get("maxConcurrentRunsPerAutomation", DEFAULT_MAX_CONCURRENT) if tenant else 0
            )
        return {"maxConcurrentRunsPerAutomation": int(value)}

    async def put_settings(self, principal: Principal, max_per_automation: int) -> dict[str, int]:
        """Seed 004 settings. Lowering the cap never edits automations: each one's effective limit is the
        smaller of its own maxConcurrentRuns and this value."""
        principal.require(Permission.ADMIN)
        async with transaction(self.sessions) as s:
            tenant = await tenant_store.get_tenant(s, principal.tenant_id)
            if tenant is None:
                raise NotFound("tenant does not exist")
            tenant.settings = {**(tenant.settings or {}), "maxConcurrentRunsPerAutomation": max_per_automation}
        return {"maxConcurrentRunsPerAutomation": max_per_automation}

    async def delete(self, principal: Principal, automation_id: str) -> None:
        async with transaction(self.sessions) as s:
            row = await self.load(s, principal, automation_id, Permission.WRITE, lock=True)
            active = await run_store.count_active_for_automation(s, row.id, [RunStatus.QUEUED, *ACTIVE])
            if active:
                raise Conflict(f"the automation has {active} unfinished run(s); stop them first", code=Code.RUNS_ACTIVE)
            await store.remove(s, row)


def _schedule_public(row: Schedule) -> SchedulePublic:
    return SchedulePublic(
        id=row.id,
        cron=row.cron,
        interval=row.interval,
        start_at=row.start_at,
        stop_at=row.stop_at,
        timezone=row.timezone,
        last_started_at=row.last_started_at,
        next_run_at=row.next_run_at,
    )
