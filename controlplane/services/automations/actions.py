"""Seed 004's actions on an automation beyond enable/disable: copy, change-owner (and move), change-space,
and rotating the execution token that authorizes webhook runs.

Who may do what (see services/tenancy/spaces.py for what a user sees):
- copy: anyone who sees the automation and may write in its space; the copy lands in the same space,
  owned by the caller, with the same code, settings and schedules, a new id and a new execution token;
- change-owner and move: tenant admins only (seed 004: TenantAdmin); both set the owner (the seed gives
  the two the same description; move is the older name). The new owner must be a user of the tenant. As
  the seed says, the action "removes the history and change logs of this automation": its ended runs go
  (with their logs, artifacts and timelines; the usage API keeps counting them) and so do its stored
  versions that no remaining run needs. Unfinished runs are not history yet: they stay and end as usual.
  Giving an automation to its current owner changes nothing;
- change-space: anyone who may write the automation and write in the target space;
- rotate-execution-token: anyone who may write the automation; the old token stops working at once.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from controlplane.core.auth import Permission, Principal
from controlplane.core.errors import Code, Conflict, NotFound
from controlplane.core.schemas.automations import AutomationPublic
from controlplane.db.session import transaction
from controlplane.db.tables import Automation, Schedule, utcnow
from controlplane.services.automations.body import spec_of
from controlplane.services.automations.service import AutomationService, new_execution_token
from controlplane.services.events import hooks as run_hooks
from controlplane.services.scheduling import ticks as schedules
from controlplane.store import automations as store
from controlplane.store import runs as run_store
from controlplane.store import tenants as tenant_store

HISTORY_BATCH = 500  # run ids per DELETE ... IN (...) statement


def _name_taken(name: str) -> Conflict:
    return Conflict(f"an automation named {name!r} already exists", code=Code.NAME_TAKEN)


async def copy(service: AutomationService, principal: Principal, automation_id: str, *, name: str) -> AutomationPublic:
    """Duplicate an automation under a new name (201 with the copy; 409 NAME_TAKEN when the name is used)."""
    principal.require(Permission.WRITE)
    try:
        async with transaction(service.sessions) as s:
            src = await service.load(s, principal, automation_id, Permission.READ)
            space_id = await service.spaces.target(s, principal, src.space_id)
            if await store.get_by_name(s, principal.tenant_id, name):
                raise _name_taken(name)
            now = utcnow()
            row = Automation(
                tenant_id=principal.tenant_id,
                name=name,
                description=src.description,
                state=src.state,
                run_mode=src.run_mode,
                owner_id=principal.user_id,
                space_id=space_id,
                runtime=src.runtime,
                entrypoint=src.entrypoint,
                files=dict(src.files),
                args=list(src.args or []),
                env=dict(src.env or {}),
                timeout_seconds=src.timeout_seconds,
                resources=dict(src.resources or {}),
                network=src.network,
                parameters=list(src.parameters or []),
                max_concurrent_runs=src.max_concurrent_runs,
                workspace=dict(src.workspace or {}),
                execution_token=new_execution_token(),
                version=1,
                source="api",
                created_at=now,
                updated_at=now,
            )
            s.add(row)
            await s.flush()
            await store.add_version(s, row, spec_of(row))
            copies = [
                Schedule(
                    cron=x.cron,
                    interval=x.interval,
                    start_at=x.start_at,
                    stop_at=x.stop_at,
                    timezone=x.timezone,
                    next_run_at=schedules.next_fire(
                        cron=x.cron,
                        interval=x.interval,
                        tz=x.timezone,
                        start_at=x.start_at,
                        stop_at=x.stop_at,
                        after=now,
                    ),
                )
                for x in (await store.schedules_of(s, [src.id]))[src.id]
            ]
            await store.replace_schedules(s, row, copies)
            new_id = row.id
    except IntegrityError as exc:
        raise _name_taken(name) from exc
    run_hooks.publish(
        run_hooks.Event(run_hooks.EventKind.AUTOMATION_CREATED, principal.tenant_id, new_id, service.sessions)
    )
    return await service.get(principal, new_id)


async def change_owner(service: AutomationService, principal: Principal, automation_id: str, *, user_id: str) -> None:
    """Give the automation to another user of the tenant (admins only; 404 USER_NOT_FOUND for an unknown user)."""
    principal.require(Permission.ADMIN)
    async with transaction(service.sessions) as s:
        row = await service.load(s, principal, automation_id, Permission.WRITE, lock=True)
        user = await tenant_store.get_user(s, principal.tenant_id, user_id)
        if user is None:
            raise NotFound(f"user {user_id} does not exist", code=Code.USER_NOT_FOUND)
        if row.owner_id != user.id:
            row.owner_id = user.id
            row.updated_at = utcnow()
            await _forget_history(s, row)


async def _forget_history(s: AsyncSession, row: Automation) -> None:
    """Seed 004's change-owner: the previous owner's run history and the automation's change log go."""
    ended = await run_store.final_ids_of(s, row.id)
    for at in range(0, len(ended), HISTORY_BATCH):
        await run_store.delete_final(s, ended[at : at + HISTORY_BATCH], [row.id])
    await store.remove_versions(s, row.id, keep={row.version} | await run_store.versions_in_use(s, row.id))
    if row.last_run_id is None or row.last_run_id in ended:  # the last run was history: so are its lastRun*
        row.last_run_id = None
        row.last_run_at = None
        row.last_run_status = None
        row.last_run_duration = None


async def change_space(service: AutomationService, principal: Principal, automation_id: str, *, space_id: str) -> None:
    """Move the automation into another space of the tenant (404 SPACE_NOT_FOUND for one the caller cannot
    see, 403 for one they may not write in). Its runs stay where they were made."""
    async with transaction(service.sessions) as s:
        row = await service.load(s, principal, automation_id, Permission.WRITE, lock=True)
        target = await service.spaces.target(s, principal, space_id)
        if row.space_id != target:
            row.space_id = target
            row.updated_at = utcnow()


async def rotate_execution_token(service: AutomationService, principal: Principal, automation_id: str) -> str:
    """A new executionToken; webhook calls with the old one are refused from now on."""
    async with transaction(service.sessions) as s:
        row = await service.load(s, principal, automation_id, Permission.WRITE, lock=True)
        row.execution_token = new_execution_token()
        row.updated_at = utcnow()
        return row.execution_token
