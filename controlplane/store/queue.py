"""What is in flight and what waits: the queries behind admission and background dispatch.

Decisions that must not race take a row lock first: the tenant's row (``lock_tenant``, synchronous
admission and a tenant's queue) or the single dispatch row (``lock_dispatch``, background dispatch). On
PostgreSQL that is a row lock; on SQLite the database write lock. Two requests racing for the last slot are
serialised and never both win, across any number of replicas.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from controlplane.core.states import TERMINAL, RunStatus
from controlplane.db.tables import Automation, DispatchState, Run, Tenant

IN_FLIGHT = (RunStatus.STARTING, RunStatus.RUNNING, RunStatus.MUST_STOP)
SYNC_HOLDS = (RunStatus.QUEUED, *IN_FLIGHT)  # a synchronous run holds its slot from the moment it is accepted


def _values(statuses: Sequence[RunStatus]) -> list[str]:
    return [s.value for s in statuses]


async def lock_tenant(s: AsyncSession, tenant_id: str) -> Tenant:
    await s.execute(update(Tenant).where(Tenant.id == tenant_id).values(admission_seq=Tenant.admission_seq + 1))
    tenant = await s.get(Tenant, tenant_id)
    assert tenant is not None
    return tenant


async def lock_dispatch(s: AsyncSession, now: datetime) -> DispatchState:
    """The dispatch row, locked for the rest of the transaction (made when a database lacks it)."""
    await s.execute(update(DispatchState).where(DispatchState.id == 1).values(updated_at=now))
    state = await s.get(DispatchState, 1)
    if state is None:  # a database migrated without its seed row
        state = DispatchState(id=1, last_tenant_id="")
        s.add(state)
    return state


async def _count(s: AsyncSession, *conditions: Any) -> int:
    return int((await s.execute(select(func.count()).select_from(Run).where(*conditions))).scalar_one())


async def automation_in_flight(s: AsyncSession, automation_id: str) -> int:
    """Runs of the automation holding a slot: in flight, or synchronous and accepted."""
    return await _count(
        s,
        Run.automation_id == automation_id,
        Run.status.in_(_values(IN_FLIGHT)) | ((Run.status == RunStatus.QUEUED.value) & Run.synchronous.is_(True)),
    )


async def sync_holders(s: AsyncSession, tenant_id: str) -> list[Run]:
    stmt = select(Run).where(Run.tenant_id == tenant_id, Run.synchronous.is_(True), Run.status.in_(_values(SYNC_HOLDS)))
    return list((await s.execute(stmt)).scalars())


async def automation_running(s: AsyncSession, automation_id: str) -> list[Run]:
    stmt = select(Run).where(Run.automation_id == automation_id, Run.status.in_(_values(IN_FLIGHT)))
    return list((await s.execute(stmt)).scalars())


async def background_queued_of(s: AsyncSession, tenant_id: str) -> int:
    return await _count(s, Run.tenant_id == tenant_id, Run.synchronous.is_(False), Run.status == RunStatus.QUEUED.value)


async def background_running_of(s: AsyncSession, tenant_id: str) -> list[Run]:
    stmt = select(Run).where(Run.tenant_id == tenant_id, Run.synchronous.is_(False), Run.status.in_(_values(IN_FLIGHT)))
    return list((await s.execute(stmt)).scalars())


async def background_in_flight(s: AsyncSession) -> int:
    return await _count(s, Run.synchronous.is_(False), Run.status.in_(_values(IN_FLIGHT)))


async def tenants_waiting(s: AsyncSession) -> list[str]:
    """Tenants with queued background runs, in id order (the round robin's ring)."""
    stmt = (
        select(Run.tenant_id)
        .where(Run.status == RunStatus.QUEUED.value, Run.synchronous.is_(False))
        .distinct()
        .order_by(Run.tenant_id)
    )
    return [str(t) for t in (await s.execute(stmt)).scalars()]


async def oldest_queued(s: AsyncSession, tenant_id: str, limit: int) -> list[Run]:
    """A tenant's queued background runs, first in first out."""
    stmt = (
        select(Run)
        .where(Run.tenant_id == tenant_id, Run.status == RunStatus.QUEUED.value, Run.synchronous.is_(False))
        .order_by(Run.created_at, Run.id)
        .limit(limit)
    )
    return list((await s.execute(stmt)).scalars())


async def waited_since(s: AsyncSession, before: datetime, limit: int) -> list[str]:
    """Queued background runs created before ``before``."""
    stmt = (
        select(Run.id)
        .where(Run.status == RunStatus.QUEUED.value, Run.synchronous.is_(False), Run.created_at < before)
        .limit(limit)
    )
    return [str(r) for r in (await s.execute(stmt)).scalars()]


async def depth_by_tenant(s: AsyncSession) -> dict[str, int]:
    """Queued background runs per tenant name (the queue depth gauge)."""
    stmt = (
        select(Tenant.name, func.count(Run.id))
        .join(Run, Run.tenant_id == Tenant.id)
        .where(Run.status == RunStatus.QUEUED.value, Run.synchronous.is_(False))
        .group_by(Tenant.name)
    )
    return {str(name): int(n) for name, n in (await s.execute(stmt)).all()}


async def overdue(s: AsyncSession, before: datetime) -> int:
    """Unfinished runs whose deadline passed before ``before`` (stuck: the alert's gauge)."""
    stmt = select(func.count(Run.id)).where(Run.status.not_in(_values(tuple(TERMINAL))), Run.deadline_at < before)
    return int(await s.scalar(stmt) or 0)


async def recent_durations(s: AsyncSession, automation_id: str, limit: int) -> list[float]:
    """Seconds the automation's last ``limit`` finished runs took, newest first."""
    stmt = (
        select(Run.start_time, Run.stop_time)
        .where(Run.automation_id == automation_id, Run.start_time.is_not(None), Run.stop_time.is_not(None))
        .order_by(Run.stop_time.desc())
        .limit(limit)
    )
    return [(stop - start).total_seconds() for start, stop in (await s.execute(stmt)).all() if start and stop]


async def automation_and_tenant(
    s: AsyncSession, automation_id: str, tenant_id: str
) -> tuple[Automation | None, Tenant | None]:
    return await s.get(Automation, automation_id), await s.get(Tenant, tenant_id)
