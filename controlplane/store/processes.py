"""Rows of the processes dialect (seed 001): automations by name, background jobs, per-user notifications."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from controlplane.core.states import RunStatus
from controlplane.db.tables import Automation, Notification, ProcessJob, Run


async def automation_names(session: AsyncSession, tenant_id: str) -> list[tuple[str, str]]:
    """(id, name) of every automation of the tenant."""
    stmt = select(Automation.id, Automation.name).where(Automation.tenant_id == tenant_id).order_by(Automation.name)
    return [(i, n) for i, n in (await session.execute(stmt)).all()]


async def unfinished_background_runs(
    session: AsyncSession, tenant_id: str, statuses: Iterable[RunStatus], *, limit: int
) -> list[Run]:
    stmt = (
        select(Run)
        .where(
            Run.tenant_id == tenant_id,
            Run.synchronous.is_(False),
            Run.status.in_([s.value for s in statuses]),
        )
        .order_by(Run.created_at, Run.id)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def add_job(session: AsyncSession, job: ProcessJob) -> None:
    session.add(job)
    await session.flush()


async def get_job(session: AsyncSession, run_id: str) -> ProcessJob | None:
    return await session.get(ProcessJob, run_id)


async def claim_notification(session: AsyncSession, run_id: str, now: datetime) -> bool:
    """Compare-and-set: True for the one caller that gets to notify about this job."""
    result = await session.execute(
        update(ProcessJob)
        .where(ProcessJob.run_id == run_id, ProcessJob.notified_at.is_(None))
        .values(notified_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0) == 1


async def set_email_status(session: AsyncSession, run_id: str, status: str) -> None:
    await session.execute(
        update(ProcessJob)
        .where(ProcessJob.run_id == run_id)
        .values(email_status=status[:512])
        .execution_options(synchronize_session=False)
    )


async def add_notification(session: AsyncSession, row: Notification) -> None:
    session.add(row)
    await session.flush()


async def notifications(
    session: AsyncSession, tenant_id: str, user_id: str, *, unread_only: bool, limit: int
) -> list[Notification]:
    stmt = select(Notification).where(Notification.tenant_id == tenant_id, Notification.user_id == user_id)
    if unread_only:
        stmt = stmt.where(Notification.read_at.is_(None))
    stmt = stmt.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit)
    return list((await session.execute(stmt)).scalars())


async def get_notification(session: AsyncSession, tenant_id: str, user_id: str, item_id: str) -> Notification | None:
    row = await session.get(Notification, item_id)
    return row if row is not None and row.tenant_id == tenant_id and row.user_id == user_id else None


async def mark_all_read(session: AsyncSession, tenant_id: str, user_id: str, now: datetime) -> int:
    result = await session.execute(
        update(Notification)
        .where(Notification.tenant_id == tenant_id, Notification.user_id == user_id, Notification.read_at.is_(None))
        .values(read_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
