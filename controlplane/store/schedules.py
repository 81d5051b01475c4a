"""Schedules as the scheduler sees them: which are due, and moving one on exactly once.

``advance`` is a compare-and-set on ``next_run_at``: of several schedulers that read the same due tick
(two replicas overlapping for a moment around a lease hand-over), exactly one moves the schedule on, and
only that one starts a run. The arithmetic of the next fire time lives in services/scheduling/ticks.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from controlplane.core.states import AutomationState
from controlplane.db.tables import Automation, Schedule, Tenant


@dataclass(frozen=True)
class DueSchedule:
    """A due schedule with what it takes to start its run on the owner's behalf."""

    schedule: Schedule
    owner_id: str
    tenant_name: str


async def due(session: AsyncSession, now: datetime, limit: int) -> list[DueSchedule]:
    """Schedules with ``next_run_at <= now`` whose automation is not disabled, oldest tick first."""
    stmt = (
        select(Schedule, Automation.owner_id, Tenant.name)
        .join(Automation, Automation.id == Schedule.automation_id)
        .join(Tenant, Tenant.id == Automation.tenant_id)
        .where(Schedule.next_run_at <= now, Automation.state != AutomationState.DISABLED.value)
        .order_by(Schedule.next_run_at, Schedule.id)
        .limit(limit)
        .execution_options(populate_existing=True)
    )
    return [DueSchedule(row[0], row[1], row[2]) for row in (await session.execute(stmt)).all()]


async def due_disabled(session: AsyncSession, now: datetime, limit: int) -> list[Schedule]:
    """Due schedules of disabled automations: their ticks are skipped, never fired later."""
    stmt = (
        select(Schedule)
        .join(Automation, Automation.id == Schedule.automation_id)
        .where(Schedule.next_run_at <= now, Automation.state == AutomationState.DISABLED.value)
        .order_by(Schedule.next_run_at, Schedule.id)
        .limit(limit)
        .execution_options(populate_existing=True)
    )
    return list((await session.execute(stmt)).scalars())


async def advance(
    session: AsyncSession,
    schedule_id: str,
    expected_next: datetime,
    *,
    last_started_at: datetime | None,
    next_run_at: datetime | None,
) -> bool:
    """Move a schedule on from the tick ``expected_next`` to ``next_run_at`` (None: it has ended), recording
    ``last_started_at`` unless None. False when another scheduler moved it first (nothing changed)."""
    values: dict[str, Any] = {"next_run_at": next_run_at}
    if last_started_at is not None:
        values["last_started_at"] = last_started_at
    result = await session.execute(
        update(Schedule)
        .where(Schedule.id == schedule_id, Schedule.next_run_at == expected_next)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def of_automation(session: AsyncSession, automation_id: str) -> list[Schedule]:
    stmt = (
        select(Schedule)
        .where(Schedule.automation_id == automation_id)
        .order_by(Schedule.position)
        .execution_options(populate_existing=True)
    )
    return list((await session.execute(stmt)).scalars())


async def set_next(session: AsyncSession, schedule_id: str, next_run_at: datetime | None) -> None:
    """Set a schedule's next tick unconditionally (re-enabling an automation recomputes it from now)."""
    await session.execute(
        update(Schedule)
        .where(Schedule.id == schedule_id)
        .values(next_run_at=next_run_at)
        .execution_options(synchronize_session=False)
    )
