"""Named leases on both dialects: take, renew, take over after expiry, release, and a race for a new one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.db.session import create_engine, session_factory, transaction
from controlplane.store import leases

T0 = datetime(2031, 1, 3, 17, 0, tzinfo=UTC)
TTL = 10.0


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url, pool_size=25)
    yield session_factory(engine)
    await engine.dispose()


async def acquire(
    sessions: async_sessionmaker[AsyncSession], holder: str, now: datetime, name: str = "scheduler"
) -> bool:
    async with transaction(sessions) as s:
        return await leases.acquire(s, name, holder, TTL, now)


async def holder(sessions: async_sessionmaker[AsyncSession], now: datetime | None = None) -> str | None:
    async with sessions() as s:
        return await leases.holder_of(s, "scheduler", now=now)


async def test_free_lease_is_taken_and_others_are_refused(sessions: async_sessionmaker[AsyncSession]) -> None:
    assert await holder(sessions) is None
    assert await acquire(sessions, "a", T0)
    assert await holder(sessions) == "a"
    assert not await acquire(sessions, "b", T0)
    assert not await acquire(sessions, "b", T0 + timedelta(seconds=TTL))  # expired means past expires_at
    assert await holder(sessions, T0 + timedelta(seconds=5)) == "a"


async def test_holder_renews_and_keeps_it(sessions: async_sessionmaker[AsyncSession]) -> None:
    assert await acquire(sessions, "a", T0)
    for k in range(1, 6):  # renewing every 8 s keeps it well past the first expiry
        now = T0 + timedelta(seconds=8 * k)
        assert await acquire(sessions, "a", now)
        assert not await acquire(sessions, "b", now + timedelta(seconds=TTL - 1))
    assert await holder(sessions) == "a"


async def test_expired_lease_is_taken_over(sessions: async_sessionmaker[AsyncSession]) -> None:
    assert await acquire(sessions, "a", T0)
    later = T0 + timedelta(seconds=TTL + 0.5)
    assert await holder(sessions, later) is None  # expired: nobody holds it any more
    assert await acquire(sessions, "b", later)
    assert await holder(sessions, later) == "b"
    assert not await acquire(sessions, "a", later + timedelta(seconds=1))  # the old holder is out
    assert await acquire(sessions, "b", later + timedelta(seconds=1))


async def test_release_frees_it_at_once_and_only_for_its_holder(sessions: async_sessionmaker[AsyncSession]) -> None:
    assert await acquire(sessions, "a", T0)
    async with transaction(sessions) as s:
        assert not await leases.release(s, "scheduler", "b")
    assert await holder(sessions) == "a"
    async with transaction(sessions) as s:
        assert await leases.release(s, "scheduler", "a")
    assert await holder(sessions) is None
    assert await acquire(sessions, "b", T0 + timedelta(seconds=1))


async def test_leases_are_independent_by_name(sessions: async_sessionmaker[AsyncSession]) -> None:
    assert await acquire(sessions, "a", T0, name="one")
    assert await acquire(sessions, "b", T0, name="two")
    assert not await acquire(sessions, "b", T0, name="one")


@pytest.mark.parametrize("expired", [False, True])
async def test_twenty_racing_acquires_exactly_one_wins(
    sessions: async_sessionmaker[AsyncSession], expired: bool
) -> None:
    now = T0
    if expired:  # the race for a lease whose holder died, not only for a new one
        assert await acquire(sessions, "dead", T0 - timedelta(seconds=TTL * 3))
    results = await asyncio.gather(*(acquire(sessions, f"r{i}", now) for i in range(20)))
    assert sum(results) == 1, results
    winner = f"r{results.index(True)}"
    assert await holder(sessions, now) == winner
