"""The rate limiter on both databases: the sliding minute, Retry-After that is right, refused requests not
counted, exact limits under concurrency and across replicas, old windows purged."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.core.errors import RateLimited
from controlplane.db.session import create_engine, session_factory
from controlplane.db.tables import RateLimitWindow
from controlplane.services.tenancy.ratelimit import RateLimiter, Tier, tier_of
from tests.support.clock import FakeClock
from tests.support.platform import make_settings

T0 = 1_800_000_000.0  # a minute boundary (divisible by 60)


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


def limiter(
    tmp_path: Path,
    url: str,
    sessions: async_sessionmaker[AsyncSession],
    clock: FakeClock,
    reads: int = 10,
    writes: int = 3,
) -> RateLimiter:
    settings = make_settings(tmp_path, url, rate_limit_reads_per_minute=reads, rate_limit_writes_per_minute=writes)
    return RateLimiter(settings, sessions, clock=clock)


async def allowed(rl: RateLimiter, user: str, method: str = "GET") -> bool:
    try:
        await rl.check(user, method)
        return True
    except RateLimited:
        return False


def test_methods_map_to_the_seed_tiers() -> None:
    assert {tier_of(m) for m in ("GET", "HEAD", "get")} == {Tier.READS}
    assert {tier_of(m) for m in ("POST", "PUT", "PATCH", "DELETE")} == {Tier.WRITES}


async def test_limit_remaining_reset_and_a_refusal(
    tmp_path: Path, database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    clock = FakeClock(T0 + 6)
    rl = limiter(tmp_path, database_url, sessions, clock)
    seen = []
    for _ in range(10):
        decision = await rl.check("alice", "GET")
        assert decision is not None and decision.limit == 10 and decision.reset_at == T0 + 60
        seen.append(decision.remaining)
    assert seen == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    with pytest.raises(RateLimited) as info:
        await rl.check("alice", "GET")
    headers = info.value.headers
    assert info.value.status_code == 429 and info.value.code == "RATE_LIMITED"
    assert headers["X-RateLimit-Limit"] == "10" and headers["X-RateLimit-Remaining"] == "0"
    # nothing from the previous minute: this minute's 10 fade during the next one, and a request fits
    # once 10 * (1 - f) < 10, i.e. any moment after the boundary: the first whole second after it
    assert headers["Retry-After"] == "55"
    assert int(headers["X-RateLimit-Reset"]) == T0 + 61
    # writes are a separate budget, and other users have their own
    assert await allowed(rl, "alice", "POST")
    assert await allowed(rl, "bob", "GET")


async def test_sliding_minute_and_retry_after_is_exact(
    tmp_path: Path, database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    clock = FakeClock(T0 + 50)
    rl = limiter(tmp_path, database_url, sessions, clock)
    for _ in range(10):
        assert await allowed(rl, "carol")
    clock.set(T0 + 60 + 15)  # a quarter into the next minute: the previous 10 still weigh 7.5 -> 7
    assert [await allowed(rl, "carol") for _ in range(4)] == [True] * 3 + [False]
    with pytest.raises(RateLimited) as info:
        await rl.check("carol", "GET")
    wait = int(info.value.headers["Retry-After"])
    # 10 * (1 - f) + 3 < 10  <=>  f > 0.3, i.e. after T0 + 78: the first whole second after is 4 s away
    assert wait == 4
    clock.set(T0 + 77.5)
    assert not await allowed(rl, "carol")  # not before
    clock.set(T0 + 75 + wait)
    assert await allowed(rl, "carol")  # floor(10 * (1 - 19/60)) = 6, so a 4th request fits
    assert not await allowed(rl, "carol")


async def test_refused_requests_are_not_counted(
    tmp_path: Path, database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    clock = FakeClock(T0 + 1)
    rl = limiter(tmp_path, database_url, sessions, clock, writes=3)
    assert [await allowed(rl, "dave", "POST") for _ in range(3)] == [True] * 3
    for _ in range(50):  # hammering past the limit
        assert not await allowed(rl, "dave", "POST")
    async with sessions() as s:
        stored = (await s.execute(select(RateLimitWindow.count))).scalars().all()
    assert stored == [3]
    clock.set(T0 + 120 + 1)  # two minutes on: the hammering left nothing behind
    assert [await allowed(rl, "dave", "POST") for _ in range(4)] == [True] * 3 + [False]


async def test_exact_under_concurrency_and_across_replicas(
    tmp_path: Path, database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    clock = FakeClock(T0 + 10)
    other_engine = create_engine(database_url)
    try:
        one = limiter(tmp_path, database_url, sessions, clock, reads=20)
        two = limiter(tmp_path, database_url, session_factory(other_engine), clock, reads=20)
        outcomes = await asyncio.gather(*(allowed(one if i % 2 else two, "erin") for i in range(50)))
    finally:
        await other_engine.dispose()
    assert sum(outcomes) == 20


async def test_zero_turns_a_tier_off_and_old_windows_are_purged(
    tmp_path: Path, database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    clock = FakeClock(T0)
    rl = limiter(tmp_path, database_url, sessions, clock, reads=0, writes=5)
    assert all([await rl.check("frank", "GET") is None for _ in range(30)])
    for minute in range(4):
        clock.set(T0 + 60 * minute + 1)
        assert await rl.check("frank", "DELETE") is not None
    async with sessions() as s:
        minutes = sorted((await s.execute(select(RateLimitWindow.minute))).scalars().all())
        total = (await s.execute(select(func.count()).select_from(RateLimitWindow))).scalar_one()
    first = int(T0 // 60)
    assert minutes == [first + 2, first + 3] and total == 2  # the current minute and the one before
