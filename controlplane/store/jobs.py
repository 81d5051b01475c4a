"""Seed 000's jobs as rows: a job id names a run or a schedule; a cron job adds one schedule."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from controlplane.db.tables import Automation, Run, Schedule


async def get_schedule(session: AsyncSession, tenant_id: str, schedule_id: str) -> Schedule | None:
    row = await session.get(Schedule, schedule_id)
    return row if row is not None and row.tenant_id == tenant_id else None


async def find_schedule(session: AsyncSession, automation_id: str, *, cron: str, timezone: str) -> Schedule | None:
    stmt = select(Schedule).where(
        Schedule.automation_id == automation_id, Schedule.cron == cron, Schedule.timezone == timezone
    )
    return (await session.execute(stmt.limit(1))).scalar_one_or_none()


async def append_schedule(session: AsyncSession, automation: Automation, schedule: Schedule) -> Schedule:
    """Add ``schedule`` after the automation's others (their ids, ticks and history stay as they are)."""
    last = (
        await session.execute(select(func.max(Schedule.position)).where(Schedule.automation_id == automation.id))
    ).scalar_one()
    schedule.automation_id = automation.id
    schedule.tenant_id = automation.tenant_id
    schedule.position = 0 if last is None else int(last) + 1
    session.add(schedule)
    await session.flush()
    return schedule


async def latest_run_of_schedule(session: AsyncSession, schedule_id: str) -> Run | None:
    stmt = select(Run).where(Run.schedule_id == schedule_id).order_by(Run.created_at.desc(), Run.id.desc()).limit(1)
    return (await session.execute(stmt)).scalar_one_or_none()
