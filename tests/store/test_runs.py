"""store.runs.move: the one way a run's status changes (transition table + compare-and-set + timeline), and
store.run_end: a run's end in one transaction, written once however many writers race. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.core.errors import InvalidTransition
from controlplane.core.states import RunStatus
from controlplane.db.session import create_engine, session_factory, transaction
from controlplane.db.tables import Automation, Run, RunEvent, Tenant, UsageDaily, utcnow
from controlplane.store import run_end
from controlplane.store import runs as store

T, A = "00000000-0000-0000-0000-00000000000t", "00000000-0000-0000-0000-00000000000a"


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    factory = session_factory(engine)
    async with transaction(factory) as s:
        s.add(Tenant(id=T, name="t", settings={}))
        await s.flush()
        s.add(
            Automation(
                id=A, tenant_id=T, name="a", owner_id="u", runtime="python", entrypoint="main.py", execution_token="x"
            )
        )
    yield factory
    await engine.dispose()


async def new_run(sessions: async_sessionmaker[AsyncSession], status: RunStatus = RunStatus.QUEUED) -> str:
    async with transaction(sessions) as s:
        run = Run(
            tenant_id=T, automation_id=A, automation_version=1, status=status.value, context="api", timeout_seconds=5
        )
        s.add(run)
        await s.flush()
        return run.id


async def status_and_timeline(sessions: async_sessionmaker[AsyncSession], run_id: str) -> tuple[str, list[str]]:
    async with sessions() as s:
        run = await store.get_any(s, run_id)
        assert run is not None
        events = (
            await s.execute(select(RunEvent.status).where(RunEvent.run_id == run_id).order_by(RunEvent.id))
        ).scalars()
        return run.status, list(events)


async def test_move_changes_status_fields_and_timeline(sessions: async_sessionmaker[AsyncSession]) -> None:
    run_id = await new_run(sessions)
    async with transaction(sessions) as s:
        assert await store.move(s, run_id, RunStatus.QUEUED, RunStatus.STARTING, claimed_by="r1")
    async with transaction(sessions) as s:
        assert await store.move(s, run_id, [RunStatus.STARTING, RunStatus.RUNNING], RunStatus.MUST_STOP)
    assert await status_and_timeline(sessions, run_id) == ("must stop", ["starting", "must stop"])
    async with sessions() as s:
        run = await store.get_any(s, run_id)
        assert run is not None and run.claimed_by == "r1"


async def test_move_refuses_a_move_the_table_forbids_before_writing(sessions: async_sessionmaker[AsyncSession]) -> None:
    run_id = await new_run(sessions)
    with pytest.raises(InvalidTransition) as info:
        async with transaction(sessions) as s:
            await store.move(s, run_id, RunStatus.QUEUED, RunStatus.RUNNING)
    assert info.value.status_code == 409 and info.value.code == "INVALID_TRANSITION"
    with pytest.raises(InvalidTransition):  # one illegal source among several is refused as well
        async with transaction(sessions) as s:
            await store.move(s, run_id, [RunStatus.STARTING, RunStatus.FINISHED], RunStatus.STOPPED)
    assert await status_and_timeline(sessions, run_id) == ("queued", [])


async def test_move_loses_when_the_status_changed_meanwhile(sessions: async_sessionmaker[AsyncSession]) -> None:
    run_id = await new_run(sessions, RunStatus.RUNNING)
    async with transaction(sessions) as s:
        assert not await store.move(s, run_id, RunStatus.STARTING, RunStatus.RUNNING)
    assert await status_and_timeline(sessions, run_id) == ("running", [])


async def test_set_fields_refuses_status(sessions: async_sessionmaker[AsyncSession]) -> None:
    run_id = await new_run(sessions)
    async with transaction(sessions) as s:
        with pytest.raises(ValueError, match="move"):
            await store.set_fields(s, run_id, status="running")
        assert await store.set_fields(s, run_id, title="renamed")


async def test_a_run_ends_once_when_writers_race(sessions: async_sessionmaker[AsyncSession]) -> None:
    run_id = await new_run(sessions, RunStatus.RUNNING)
    ending = run_end.Ending(status=RunStatus.FINISHED, exit_code=0, errors=[], stdout_bytes=3)

    async def end() -> run_end.Ended | None:
        async with transaction(sessions) as s:
            return await run_end.record_end(s, run_id, ending, now=utcnow())

    results = await asyncio.gather(*(end() for _ in range(4)), return_exceptions=True)
    ended = [r for r in results if isinstance(r, run_end.Ended)]
    assert len(ended) == 1 and ended[0].status == RunStatus.FINISHED
    assert all(r is None or isinstance(r, (run_end.Ended, Exception)) for r in results)
    assert await status_and_timeline(sessions, run_id) == ("finished", ["finished"])
    async with sessions() as s:
        days = list((await s.execute(select(UsageDaily))).scalars())
        assert sum(d.runs for d in days) == 1  # counted in usage exactly once
    async with transaction(sessions) as s:  # and never again
        assert await run_end.record_end(s, run_id, ending, now=utcnow()) is None


async def test_an_unstarted_end_only_ends_a_queued_run(sessions: async_sessionmaker[AsyncSession]) -> None:
    queued, running = await new_run(sessions), await new_run(sessions, RunStatus.RUNNING)
    entry = {"code": "QUEUE_TIMEOUT", "title": "waited"}
    async with transaction(sessions) as s:
        assert await run_end.record_unstarted(s, running, RunStatus.NOT_STARTED, entry, now=utcnow()) is None
        ended = await run_end.record_unstarted(s, queued, RunStatus.NOT_STARTED, entry, now=utcnow())
    assert ended is not None and ended.duration is None
    assert await status_and_timeline(sessions, queued) == ("not started", ["not started"])
