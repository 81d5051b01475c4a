"""Named leases: whoever holds an unexpired one acts alone (e.g. the scheduler of several replicas).

``acquire`` takes a free lease, renews one it holds, or takes over one whose holder let it expire, in two
statements that are each atomic on SQLite and PostgreSQL: ``INSERT ... ON CONFLICT DO NOTHING`` creates a
missing lease (of several racing inserts exactly one lands), then a guarded ``UPDATE ... WHERE holder = me OR
expires_at < now`` renews or steals (PostgreSQL re-checks the condition on the row a concurrent winner
wrote; SQLite runs one writer at a time). Call each of these in a transaction of its own and commit it:
the lease counts from the commit.

Times are the callers' clocks (``now``), so replicas' clocks should agree to well within the lease's life.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from controlplane.db.tables import Lease


def _changed(result: object) -> bool:
    return bool(getattr(result, "rowcount", 0))


async def acquire(session: AsyncSession, name: str, holder: str, ttl_seconds: float, now: datetime) -> bool:
    """Take, renew or take over lease ``name`` for ``holder`` until ``now + ttl_seconds``; True when held."""
    expires_at = now + timedelta(seconds=ttl_seconds)
    values = {"name": name, "holder": holder, "expires_at": expires_at}
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT ... ON CONFLICT DO NOTHING
    stmt = insert(Lease).values(**values).on_conflict_do_nothing(index_elements=["name"]).returning(Lease.name)
    if (await session.execute(stmt)).first() is not None:
        return True
    renewed = await session.execute(
        update(Lease)
        .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at < now))
        .values(holder=holder, expires_at=expires_at)
    )
    return _changed(renewed)


async def release(session: AsyncSession, name: str, holder: str) -> bool:
    """Give the lease up (only ``holder``'s own), so another replica need not wait for it to expire."""
    return _changed(await session.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder)))


async def holder_of(session: AsyncSession, name: str, *, now: datetime | None = None) -> str | None:
    """Who holds lease ``name``; with ``now``, None when the lease has expired by then."""
    stmt = select(Lease).where(Lease.name == name).execution_options(populate_existing=True)
    lease = (await session.execute(stmt)).scalar_one_or_none()
    if lease is None or (now is not None and lease.expires_at < now):
        return None
    return lease.holder
