"""Daily usage aggregates: atomic adds under concurrency and seed-004 usage rows, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.core.errors import ValidationFailed
from controlplane.db.session import create_engine, session_factory, transaction
from controlplane.db.tables import Automation, Tenant, UsageDaily
from controlplane.store import usage

T1, T2 = "00000000-0000-0000-0000-0000000000t1", "00000000-0000-0000-0000-0000000000t2"
A1, A2 = "00000000-0000-0000-0000-0000000000a1", "00000000-0000-0000-0000-0000000000a2"


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def add(
    sessions: async_sessionmaker[AsyncSession],
    *,
    day: str = "2025-08-01",
    tenant: str = T1,
    automation: str = A1,
    name: str = "one",
    owner: str = "u1",
    context: str = "api_sync",
    status: str = "finished",
    duration: float = 1.0,
    rx: int = 0,
    tx: int = 0,
) -> None:
    async with transaction(sessions) as s:
        await usage.record_run(
            s,
            day=day,
            tenant_id=tenant,
            automation_id=automation,
            automation_name=name,
            owner_id=owner,
            context=context,
            status=status,
            duration_seconds=duration,
            rx_bytes=rx,
            tx_bytes=tx,
        )


async def row_of(sessions: async_sessionmaker[AsyncSession], day: str, tenant: str, automation: str) -> UsageDaily:
    async with sessions() as s:
        row = await s.get(UsageDaily, (day, tenant, automation))
    assert row is not None
    return row


async def test_record_run_adds_up(sessions: async_sessionmaker[AsyncSession]) -> None:
    await add(sessions, context="scheduled", duration=1.25, rx=100, tx=10)
    await add(sessions, context="triggered", status="failed", duration=2.5, rx=1, tx=2)
    await add(sessions, context="webhook", status="exceeded limit", duration=0.25)
    await add(sessions, context="api_async", status="finished with warnings", name="renamed", owner="u2")
    await add(sessions, context="scheduled", status="stopped", day="2025-08-02")
    row = await row_of(sessions, "2025-08-01", T1, A1)
    assert (row.runs, row.scheduled_runs, row.triggered_runs, row.webhook_runs, row.failed_runs) == (4, 1, 1, 1, 2)
    assert row.duration_seconds == pytest.approx(5.0) and (row.rx_bytes, row.tx_bytes) == (101, 12)
    assert (row.automation_name, row.owner_id) == ("renamed", "u2")  # the latest run's
    other_day = await row_of(sessions, "2025-08-02", T1, A1)
    assert (other_day.runs, other_day.scheduled_runs, other_day.failed_runs) == (1, 1, 0)


async def test_concurrent_adds_to_one_row_sum_exactly(sessions: async_sessionmaker[AsyncSession]) -> None:
    n = 30
    await asyncio.gather(
        *(
            add(sessions, context="scheduled" if i % 3 == 0 else "api_async", duration=0.5, rx=i, tx=2 * i)
            for i in range(n)
        )
    )
    row = await row_of(sessions, "2025-08-01", T1, A1)
    assert row.runs == n and row.scheduled_runs == n // 3
    assert row.duration_seconds == n * 0.5
    assert row.rx_bytes == sum(range(n)) and row.tx_bytes == 2 * sum(range(n))
    async with sessions() as s:
        assert len((await s.execute(select(UsageDaily))).scalars().all()) == 1


async def _seed(sessions: async_sessionmaker[AsyncSession]) -> None:
    # A1 exists (renamed since its runs); A2 was deleted: its recorded name and owner are all that is left
    async with transaction(sessions) as s:
        s.add(Tenant(id=T1, name="t1", settings={}))
        await s.flush()
        s.add(
            Automation(
                id=A1,
                tenant_id=T1,
                name="current-one",
                owner_id="owner-now",
                runtime="python",
                entrypoint="main.py",
                execution_token="x",
            )
        )
    await add(sessions, day="2025-08-01", context="scheduled", duration=1.4, rx=10, tx=1)
    await add(sessions, day="2025-08-01", context="webhook", duration=1.4, rx=20, tx=2)
    await add(sessions, day="2025-08-01", automation=A2, name="gone", owner="u9", context="triggered", duration=0.3)
    await add(sessions, day="2025-08-02", automation=A2, name="gone", owner="u9", rx=5)
    await add(sessions, day="2025-08-03", context="scheduled", tx=7)
    await add(sessions, day="2025-08-01", tenant=T2, rx=1000)  # another tenant's: never in T1's answers


def _pick(rows: list[dict[str, Any]], name: str) -> dict[str, int]:
    return {r["date"]: r["value"] for r in rows if r["name"] == name}


async def test_query_totals_per_day(sessions: async_sessionmaker[AsyncSession]) -> None:
    await _seed(sessions)
    async with sessions() as s:
        rows = await usage.query(s, T1, names=set(), date_from=None, date_to=None, by_automation=False)
    assert [r["date"] for r in rows] == ["2025-08-01"] * 7 + ["2025-08-02"] * 7 + ["2025-08-03"] * 7
    assert [r["name"] for r in rows[:7]] == list(usage.METRICS)
    assert all("automation" not in r and isinstance(r["value"], int) for r in rows)
    assert _pick(rows, "runs") == {"2025-08-01": 3, "2025-08-02": 1, "2025-08-03": 1}
    assert _pick(rows, "scheduledRuns") == {"2025-08-01": 1, "2025-08-02": 0, "2025-08-03": 1}
    assert _pick(rows, "triggeredRuns")["2025-08-01"] == 1 and _pick(rows, "webhookRuns")["2025-08-01"] == 1
    assert _pick(rows, "duration") == {"2025-08-01": 3, "2025-08-02": 1, "2025-08-03": 1}  # 3.1 s -> 3
    assert _pick(rows, "bandwidthIn") == {"2025-08-01": 30, "2025-08-02": 5, "2025-08-03": 0}
    assert _pick(rows, "bandwidthOut") == {"2025-08-01": 3, "2025-08-02": 0, "2025-08-03": 7}


async def test_query_filters_by_name_and_date(sessions: async_sessionmaker[AsyncSession]) -> None:
    await _seed(sessions)
    async with sessions() as s:
        rows = await usage.query(
            s, T1, names={"bandwidthIn", "runs"}, date_from="2025-08-02", date_to="2025-08-03", by_automation=False
        )
        assert rows == [
            {"date": "2025-08-02", "name": "runs", "value": 1},
            {"date": "2025-08-02", "name": "bandwidthIn", "value": 5},
            {"date": "2025-08-03", "name": "runs", "value": 1},
            {"date": "2025-08-03", "name": "bandwidthIn", "value": 0},
        ]
        one_day = await usage.query(
            s, T1, names={"runs"}, date_from="2025-08-01", date_to="2025-08-01", by_automation=False
        )
        assert one_day == [{"date": "2025-08-01", "name": "runs", "value": 3}]
        until = await usage.query(s, T1, names={"runs"}, date_from=None, date_to="2025-08-02", by_automation=False)
        assert [r["date"] for r in until] == ["2025-08-01", "2025-08-02"]
        # the seed's singular spellings are accepted and answered in the plural
        alias = await usage.query(
            s, T1, names={"scheduledRun"}, date_from="2025-08-03", date_to=None, by_automation=False
        )
        assert alias == [{"date": "2025-08-03", "name": "scheduledRuns", "value": 1}]
        assert await usage.query(s, "nobody", names=set(), date_from=None, date_to=None, by_automation=False) == []
        with pytest.raises(ValidationFailed, match="cpu"):
            await usage.query(s, T1, names={"cpu"}, date_from=None, date_to=None, by_automation=False)
        with pytest.raises(ValidationFailed, match="date_from"):
            await usage.query(s, T1, names=set(), date_from="yesterday", date_to=None, by_automation=False)


async def test_query_by_automation(sessions: async_sessionmaker[AsyncSession]) -> None:
    await _seed(sessions)
    async with sessions() as s:
        rows = await usage.query(
            s, T1, names={"runs", "duration"}, date_from=None, date_to="2025-08-02", by_automation=True
        )
    current = {"guid": A1, "name": "current-one", "ownerId": "owner-now"}
    gone = {"guid": A2, "name": "gone", "ownerId": "u9"}
    assert rows == [
        {"date": "2025-08-01", "name": "runs", "value": 2, "automation": current},
        {"date": "2025-08-01", "name": "duration", "value": 3, "automation": current},  # 2.8 s -> 3
        {"date": "2025-08-01", "name": "runs", "value": 1, "automation": gone},
        {"date": "2025-08-01", "name": "duration", "value": 0, "automation": gone},
        {"date": "2025-08-02", "name": "runs", "value": 1, "automation": gone},
        {"date": "2025-08-02", "name": "duration", "value": 1, "automation": gone},
    ]


def test_day_of_is_the_utc_date() -> None:
    from datetime import timedelta, timezone

    late = datetime(2025, 8, 1, 23, 30, tzinfo=timezone(timedelta(hours=-2)))
    assert usage.day_of(late) == "2025-08-02"
    assert usage.day_of(datetime(2025, 8, 1, 0, 0, tzinfo=UTC)) == "2025-08-01"
