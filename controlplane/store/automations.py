"""Automations, their frozen versions and their schedules."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import KeyedColumnElement

from controlplane.core.filters import PageQuery
from controlplane.db.tables import Automation, AutomationVersion, Schedule
from controlplane.store.query import Listing, PageResult

FILTER_COLUMNS: dict[str, KeyedColumnElement[Any]] = {
    "name": Automation.__table__.c.name,
    "runMode": Automation.__table__.c.run_mode,
    "lastRunStatus": Automation.__table__.c.last_run_status,
    "ownerId": Automation.__table__.c.owner_id,
    "spaceId": Automation.__table__.c.space_id,
    "state": Automation.__table__.c.state,
}
SORT_COLUMNS: dict[str, KeyedColumnElement[Any]] = {
    "id": Automation.__table__.c.id,
    "name": Automation.__table__.c.name,
    "runMode": Automation.__table__.c.run_mode,
    "state": Automation.__table__.c.state,
    "createdAt": Automation.__table__.c.created_at,
    "updatedAt": Automation.__table__.c.updated_at,
    "lastRunAt": Automation.__table__.c.last_run_at,
    "lastRunStatus": Automation.__table__.c.last_run_status,
    "maxConcurrentRuns": Automation.__table__.c.max_concurrent_runs,
}
LISTING = Listing(FILTER_COLUMNS, SORT_COLUMNS, Automation.__table__.c.id)


async def get(session: AsyncSession, tenant_id: str, automation_id: str) -> Automation | None:
    row = await session.get(Automation, automation_id)
    return row if row is not None and row.tenant_id == tenant_id else None


async def get_any(session: AsyncSession, automation_id: str) -> Automation | None:
    """By id alone, whatever the tenant (webhook runs: the execution token, not a bearer, names the tenant)."""
    return await session.get(Automation, automation_id)


async def get_for_update(session: AsyncSession, tenant_id: str, automation_id: str) -> Automation | None:
    stmt = select(Automation).where(Automation.id == automation_id, Automation.tenant_id == tenant_id)
    return (await session.execute(stmt.with_for_update())).scalar_one_or_none()


async def get_by_name(session: AsyncSession, tenant_id: str, name: str) -> Automation | None:
    stmt = select(Automation).where(Automation.tenant_id == tenant_id, Automation.name == name)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_page(
    session: AsyncSession,
    tenant_id: str,
    query: PageQuery,
    *,
    visible_to: tuple[str, set[str]] | None = None,
) -> PageResult:
    stmt = select(Automation).where(Automation.tenant_id == tenant_id)
    if visible_to is not None:  # (user id, space ids): theirs, or in one of those spaces (no space: the default)
        user_id, space_ids = visible_to
        stmt = stmt.where(
            or_(
                Automation.owner_id == user_id,
                Automation.space_id.in_(sorted(space_ids)),
                Automation.space_id.is_(None),
            )
        )
    return await LISTING.page(session, stmt, query)


async def add_version(session: AsyncSession, automation: Automation, spec: dict[str, Any]) -> None:
    session.add(AutomationVersion(automation_id=automation.id, version=automation.version, spec=spec))
    await session.flush()


async def get_version(session: AsyncSession, automation_id: str, version: int) -> AutomationVersion | None:
    return await session.get(AutomationVersion, (automation_id, version))


async def remove_versions(session: AsyncSession, automation_id: str, *, keep: set[int]) -> None:
    """Forget the automation's versions (its change log) except ``keep`` (current, and those runs use)."""
    stmt = delete(AutomationVersion).where(AutomationVersion.automation_id == automation_id)
    if keep:
        stmt = stmt.where(AutomationVersion.version.not_in(sorted(keep)))
    await session.execute(stmt.execution_options(synchronize_session=False))


async def schedules_of(session: AsyncSession, automation_ids: list[str]) -> dict[str, list[Schedule]]:
    out: dict[str, list[Schedule]] = {a: [] for a in automation_ids}
    if not automation_ids:
        return out
    stmt = select(Schedule).where(Schedule.automation_id.in_(automation_ids)).order_by(Schedule.position)
    for row in (await session.execute(stmt)).scalars():
        out[row.automation_id].append(row)
    return out


async def replace_schedules(session: AsyncSession, automation: Automation, schedules: list[Schedule]) -> None:
    await session.execute(delete(Schedule).where(Schedule.automation_id == automation.id))
    for pos, sched in enumerate(schedules):
        sched.automation_id = automation.id
        sched.tenant_id = automation.tenant_id
        sched.position = pos
        session.add(sched)
    await session.flush()


async def remove(session: AsyncSession, automation: Automation) -> None:
    await session.delete(automation)
    await session.flush()
