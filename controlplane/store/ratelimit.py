"""Per-minute request counters of the rate limiter, shared by every replica through the database.

``take`` is one statement: ``INSERT … ON CONFLICT DO UPDATE SET count = count + 1 WHERE count < :allowed
RETURNING count``. The database serialises concurrent takes on a row (its row lock on PostgreSQL, the
write lock on SQLite), so two replicas racing for a user's last request of a minute never both get it, and
a refused request is not counted (a client hammering past its limit recovers as soon as it slows down).
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from controlplane.db.tables import RateLimitWindow


async def take(session: AsyncSession, subject: str, minute: int, *, allowed: int) -> int | None:
    """Count one request of ``subject`` in ``minute`` if fewer than ``allowed`` were counted; returns the
    new count, or None when the request is refused (nothing counted)."""
    if allowed < 1:
        return None
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    table = RateLimitWindow.__table__.c
    stmt = (
        insert(RateLimitWindow)
        .values(subject=subject, minute=minute, count=1)
        .on_conflict_do_update(
            index_elements=["subject", "minute"], set_={"count": table.count + 1}, where=table.count < allowed
        )
        .returning(table.count)
    )
    value = (await session.execute(stmt)).scalar_one_or_none()
    return None if value is None else int(value)


async def count(session: AsyncSession, subject: str, minute: int) -> int:
    stmt = select(RateLimitWindow.count).where(RateLimitWindow.subject == subject, RateLimitWindow.minute == minute)
    value = (await session.execute(stmt)).scalar_one_or_none()
    return int(value or 0)


async def purge(session: AsyncSession, *, before: int) -> int:
    """Drop the counters of minutes before ``before``; returns how many rows went."""
    result = await session.execute(delete(RateLimitWindow).where(RateLimitWindow.minute < before))
    return int(getattr(result, "rowcount", 0) or 0)
