"""The scheduler on the fake backend, on SQLite and PostgreSQL, driven by ``tick(now)`` at fixed instants.

Seed 000's cron examples fire when expected; seed 004's interval schedules respect startAt/stopAt and step
in exact seconds across DST; missed ticks give one catch-up run; disabled automations fire nothing and no
backlog; several schedulers (and the lease) still start one run per tick.

The instants are in 2031, later than any real clock running these tests, so a scheduler running on real
time in the same platform never finds them due.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from controlplane.core import metrics
from controlplane.core.errors import QuotaExceeded
from controlplane.core.schemas.automations import AutomationCreate, ScheduleCreate
from controlplane.core.states import TERMINAL, AutomationState, RunContext, RunStatus
from controlplane.db.session import transaction
from controlplane.db.tables import Automation, Run, Schedule
from controlplane.services.platform import Platform
from controlplane.services.scheduling.scheduler import Scheduler, recompute_next
from controlplane.store import leases as lease_store
from controlplane.store import schedules as schedule_store
from tests.support.platform import PlatformFactory, client_for

FRIDAY = datetime(2031, 1, 3, 17, 0, tzinfo=UTC)  # a Friday, 18:00 in Stockholm (CET)
SECOND = timedelta(seconds=1)


def utc(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, year: int = 2031) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# --- helpers ------------------------------------------------------------------------------------------


async def make_automation(platform: Platform, *schedules: dict[str, Any], name: str = "a") -> tuple[str, list[str]]:
    admin = await platform.bootstrap_principal()
    body = AutomationCreate(
        name=name,
        files={"main.py": "", "fake.json": "{}"},
        entrypoint="main.py",
        schedules=[ScheduleCreate(**s) for s in schedules],
    )
    created = await platform.automations.create(admin, body)
    return created.id, [s.id for s in created.schedules]


async def begin_at(platform: Platform, automation_id: str, now: datetime) -> None:
    """Put the automation's schedules where a scheduler running since ``now`` would have them."""
    async with transaction(platform.sessions) as s:
        await recompute_next(s, automation_id, now)


async def schedule_row(platform: Platform, schedule_id: str) -> Schedule:
    async with platform.sessions() as s:
        row = await s.get(Schedule, schedule_id)
    assert row is not None
    return row


async def runs_of(platform: Platform, automation_id: str) -> list[Run]:
    async with platform.sessions() as s:
        stmt = select(Run).where(Run.automation_id == automation_id).order_by(Run.scheduled_start_time)
        return list((await s.execute(stmt)).scalars())


async def set_state(platform: Platform, automation_id: str, state: AutomationState) -> None:
    async with transaction(platform.sessions) as s:
        await s.execute(update(Automation).where(Automation.id == automation_id).values(state=state.value))


async def settle(platform: Platform, timeout: float = 15.0) -> None:
    """Wait until every run has ended, so closing the platform never races a run's last writes."""
    open_statuses = [st.value for st in RunStatus if st not in TERMINAL]
    async with asyncio.timeout(timeout):
        while True:
            async with platform.sessions() as s:
                pending = (await s.execute(select(Run.id).where(Run.status.in_(open_statuses)))).first()
            if pending is None:
                return
            await asyncio.sleep(0.05)


def fires(catch_up: bool) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "controlplane_schedule_fires_total", {"catch_up": "true" if catch_up else "false"}
    )
    return value or 0.0


def scheduler(platform: Platform, replica: str = "r1", **kw: Any) -> Scheduler:
    return Scheduler(platform.settings, platform.sessions, platform.runs, replica_id=replica, **kw)


# --- seed 000's cron examples ---------------------------------------------------------------------------


def timeline(fire: list[datetime], quiet: list[datetime]) -> list[tuple[datetime, bool]]:
    """Instants to tick at, in order, with whether the schedule must fire there."""
    return sorted([(t, True) for t in fire] + [(t, False) for t in quiet])


SEED_000_CASES: list[tuple[str, str, list[tuple[datetime, bool]]]] = [
    (
        "* * * * *",
        "UTC",
        timeline([FRIDAY, utc(1, 3, 17, 1), utc(1, 3, 17, 2)], [FRIDAY + 30 * SECOND, utc(1, 3, 17, 1, 59)]),
    ),
    (
        "0 * * * *",
        "UTC",
        timeline(
            [FRIDAY, utc(1, 3, 18), utc(1, 3, 19)], [utc(1, 3, 17, 30), utc(1, 3, 18) - SECOND, utc(1, 3, 18, 59)]
        ),
    ),
    (
        "0 0 * * *",
        "UTC",
        timeline([utc(1, 4), utc(1, 5)], [FRIDAY, utc(1, 4) - SECOND, utc(1, 4, 12)]),
    ),
    (
        "*/5 * * * *",
        "UTC",
        timeline(
            [FRIDAY, utc(1, 3, 17, 5), utc(1, 3, 17, 10), utc(1, 3, 17, 15)],
            [utc(1, 3, 17, 4, 59), utc(1, 3, 17, 7)],
        ),
    ),
    (  # Monday 6 to Friday 10 January, then Monday 13; never at the weekends
        "0 9 * * 1-5",
        "UTC",
        timeline(
            [utc(1, day, 9) for day in (6, 7, 8, 9, 10, 13)],
            [utc(1, 4, 9), utc(1, 5, 9), utc(1, 6, 9) - SECOND, utc(1, 6, 17), utc(1, 11, 9), utc(1, 12, 9)],
        ),
    ),
    (  # 09:00 in Stockholm is 08:00 UTC in winter
        "0 9 * * 1-5",
        "Europe/Stockholm",
        timeline(
            [utc(1, day, 8) for day in (6, 7, 8, 9, 10, 13)],
            [FRIDAY, utc(1, 4, 8), utc(1, 5, 8), utc(1, 6, 8) - SECOND, utc(1, 6, 9), utc(1, 11, 8), utc(1, 12, 8)],
        ),
    ),
]


@pytest.mark.parametrize(("cron", "tz", "instants"), SEED_000_CASES, ids=[f"{c} {t}" for c, t, _ in SEED_000_CASES])
async def test_seed_000_crons_fire_when_expected(
    database_url: str, make_platform: PlatformFactory, cron: str, tz: str, instants: list[tuple[datetime, bool]]
) -> None:
    platform = await make_platform(database_url)
    aid, (sid,) = await make_automation(platform, {"cron": cron, "timezone": tz})
    await begin_at(platform, aid, FRIDAY - 30 * SECOND)
    sch = scheduler(platform)
    expected_fires = [t for t, fire in instants if fire]
    normal_before = fires(catch_up=False)
    for now, fire in instants:
        started = await sch.tick(now)
        assert len(started) == (1 if fire else 0), (now, started)
        row = await schedule_row(platform, sid)
        assert row.next_run_at is not None and row.next_run_at > now
        if fire:
            assert row.last_started_at == now
            later = [t for t in expected_fires if t > now]
            if later:
                assert row.next_run_at == later[0]
    await settle(platform)
    runs = await runs_of(platform, aid)
    assert [r.scheduled_start_time for r in runs] == expected_fires
    assert all(r.status == RunStatus.FINISHED.value for r in runs)
    assert all(r.context == RunContext.SCHEDULED.value and r.schedule_id == sid for r in runs)
    assert fires(catch_up=False) - normal_before == len(expected_fires)

    async with client_for(platform) as api:
        got = (await api.get(f"/api/v1/automations/{aid}")).json()
        run = (await api.get(f"/api/v1/automations/{aid}/runs/{runs[-1].id}")).json()
    assert got["runMode"] == "scheduled"
    (pub,) = got["schedules"]
    row = await schedule_row(platform, sid)
    assert datetime.fromisoformat(pub["lastStartedAt"]) == expected_fires[-1]
    assert datetime.fromisoformat(pub["nextRunAt"]) == row.next_run_at
    assert run["context"] == "scheduled"
    assert datetime.fromisoformat(run["scheduledStartTime"]) == expected_fires[-1]


# --- seed 004's interval schedules ----------------------------------------------------------------------


async def test_interval_with_start_stop_and_timezone_steps_exact_seconds_across_dst(
    database_url: str, make_platform: PlatformFactory
) -> None:
    # every 6 hours from 12:00 Stockholm on Saturday 29 March 2031 (11:00 UTC) until 14:00 Stockholm on
    # Sunday 30 March (12:00 UTC): summer time starts in between (01:00 UTC on the 30th)
    platform = await make_platform(database_url)
    aid, (sid,) = await make_automation(
        platform,
        {
            "interval": 6 * 3600,
            "startAt": "2031-03-29T12:00:00",
            "stopAt": "2031-03-30T14:00:00",
            "timezone": "Europe/Stockholm",
        },
    )
    row = await schedule_row(platform, sid)
    assert row.next_run_at == utc(3, 29, 11)  # startAt, in UTC
    expected = [utc(3, 29, 11), utc(3, 29, 17), utc(3, 29, 23), utc(3, 30, 5), utc(3, 30, 11)]
    sch = scheduler(platform)
    assert await sch.tick(utc(3, 29, 11) - SECOND) == []  # not before startAt
    for t in expected:
        assert await sch.tick(t - SECOND) == []
        assert len(await sch.tick(t)) == 1
        assert await sch.tick(t + timedelta(hours=1)) == []
    row = await schedule_row(platform, sid)
    assert row.next_run_at is None and row.last_started_at == utc(3, 30, 11)  # 17:00 UTC is past stopAt
    assert await sch.tick(utc(3, 30, 17)) == []
    assert await sch.tick(utc(4, 30)) == []
    runs = await runs_of(platform, aid)
    starts = [r.scheduled_start_time for r in runs]
    assert starts == expected
    steps = [(b - a).total_seconds() for a, b in itertools.pairwise(expected)]
    assert steps == [6 * 3600] * 4
    local = [t.astimezone(ZoneInfo("Europe/Stockholm")).hour for t in expected]
    assert local == [12, 18, 0, 7, 13]  # exact seconds, so the wall clock moves an hour after the change
    await settle(platform)


async def test_interval_without_start_keeps_its_phase_when_polled_late(
    database_url: str, make_platform: PlatformFactory
) -> None:
    platform = await make_platform(database_url)
    _, (sid,) = await make_automation(platform, {"interval": 60})
    async with transaction(platform.sessions) as s:
        await schedule_store.set_next(s, sid, FRIDAY)
    sch = scheduler(platform)
    assert len(await sch.tick(FRIDAY + 0.7 * SECOND)) == 1  # a poll 0.7 s late
    assert (await schedule_row(platform, sid)).next_run_at == FRIDAY + 60 * SECOND
    assert len(await sch.tick(FRIDAY + 60.9 * SECOND)) == 1
    assert (await schedule_row(platform, sid)).next_run_at == FRIDAY + 120 * SECOND
    await settle(platform)


# --- catch-up after downtime ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "behind", "now", "tick_at", "after"),
    [
        # */5, one hour behind: 12 missed ticks -> one run for the latest (17:00), then 17:05
        ({"cron": "*/5 * * * *"}, utc(1, 3, 16, 5), utc(1, 3, 17, 2), utc(1, 3, 17, 0), utc(1, 3, 17, 5)),
        # now exactly on a tick
        ({"cron": "*/5 * * * *"}, utc(1, 3, 16, 5), utc(1, 3, 17, 5), utc(1, 3, 17, 5), utc(1, 3, 17, 10)),
        # weekdays 09:00 Stockholm, down from Friday morning to Tuesday noon: one run for Tuesday 08:00 UTC
        (
            {"cron": "0 9 * * 1-5", "timezone": "Europe/Stockholm"},
            utc(1, 3, 8),
            utc(1, 7, 12),
            utc(1, 7, 8),
            utc(1, 8, 8),
        ),
        # an interval keeps its phase: ticks at :00:30 every 10 minutes
        ({"interval": 600}, utc(1, 3, 16, 0, 30), utc(1, 3, 17, 5), utc(1, 3, 17, 0, 30), utc(1, 3, 17, 10, 30)),
    ],
)
async def test_missed_ticks_give_exactly_one_catch_up_run(
    database_url: str,
    make_platform: PlatformFactory,
    schedule: dict[str, Any],
    behind: datetime,
    now: datetime,
    tick_at: datetime,
    after: datetime,
) -> None:
    platform = await make_platform(database_url)
    aid, (sid,) = await make_automation(platform, schedule)
    async with transaction(platform.sessions) as s:
        await schedule_store.set_next(s, sid, behind)
    sch = scheduler(platform)
    caught, normal = fires(catch_up=True), fires(catch_up=False)
    started = await sch.tick(now)
    assert len(started) == 1
    assert fires(catch_up=True) - caught == 1 and fires(catch_up=False) == normal
    (run,) = await runs_of(platform, aid)
    assert run.id == started[0] and run.context == "scheduled" and run.scheduled_start_time == tick_at
    row = await schedule_row(platform, sid)
    assert row.next_run_at == after and row.last_started_at == now
    assert await sch.tick(now) == []  # never a burst
    assert await sch.tick(after - SECOND) == []
    assert len(await sch.tick(after)) == 1  # then back to normal
    assert fires(catch_up=True) - caught == 1 and fires(catch_up=False) - normal == 1
    assert len(await runs_of(platform, aid)) == 2
    await settle(platform)


async def test_catch_up_past_stop_at_fires_the_last_tick_once_and_ends(
    database_url: str, make_platform: PlatformFactory
) -> None:
    platform = await make_platform(database_url)
    aid, (sid,) = await make_automation(
        platform, {"interval": 60, "startAt": "2031-01-03T16:00:00Z", "stopAt": "2031-01-03T16:30:30Z"}
    )
    sch = scheduler(platform)
    assert len(await sch.tick(utc(1, 3, 18))) == 1
    (run,) = await runs_of(platform, aid)
    assert run.scheduled_start_time == utc(1, 3, 16, 30)
    assert (await schedule_row(platform, sid)).next_run_at is None
    assert await sch.tick(utc(1, 3, 19)) == []
    await settle(platform)


# --- disabled automations ---------------------------------------------------------------------------------


async def test_disabled_automation_fires_nothing_and_no_backlog_after_re_enable(
    database_url: str, make_platform: PlatformFactory
) -> None:
    platform = await make_platform(database_url)
    aid, (sid,) = await make_automation(platform, {"cron": "*/5 * * * *"})
    await begin_at(platform, aid, FRIDAY - SECOND)
    await set_state(platform, aid, AutomationState.DISABLED)
    sch = scheduler(platform)
    for k in range(13):  # an hour of ticks while disabled
        now = FRIDAY + timedelta(minutes=5 * k)
        assert await sch.tick(now) == []
        row = await schedule_row(platform, sid)
        assert row.next_run_at == now + timedelta(minutes=5) and row.last_started_at is None
    await set_state(platform, aid, AutomationState.AVAILABLE)
    assert await sch.tick(utc(1, 3, 18)) == []
    assert await sch.tick(utc(1, 3, 18, 4)) == []
    caught = fires(catch_up=True)
    assert len(await sch.tick(utc(1, 3, 18, 5))) == 1
    assert fires(catch_up=True) == caught
    (run,) = await runs_of(platform, aid)
    assert run.scheduled_start_time == utc(1, 3, 18, 5)
    await settle(platform)


async def test_re_enabling_recomputes_from_now_even_when_no_pass_saw_the_disabled_period(
    database_url: str, make_platform: PlatformFactory
) -> None:
    platform = await make_platform(database_url)
    aid, (sid,) = await make_automation(platform, {"cron": "*/5 * * * *"})
    await begin_at(platform, aid, FRIDAY - SECOND)
    await set_state(platform, aid, AutomationState.DISABLED)
    # disabled for an hour with no scheduler pass at all, then re-enabled the way the enable API does it
    async with transaction(platform.sessions) as s:
        await s.execute(update(Automation).where(Automation.id == aid).values(state="available"))
        await recompute_next(s, aid, utc(1, 3, 18, 2))
    sch = scheduler(platform)
    assert await sch.tick(utc(1, 3, 18, 2)) == []
    assert (await schedule_row(platform, sid)).next_run_at == utc(1, 3, 18, 5)
    assert len(await sch.tick(utc(1, 3, 18, 5))) == 1
    assert len(await runs_of(platform, aid)) == 1
    await settle(platform)


async def test_a_refused_submit_consumes_the_tick_and_counts_nothing(
    database_url: str, make_platform: PlatformFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform = await make_platform(database_url)
    aid, (sid,) = await make_automation(platform, {"cron": "* * * * *"})
    await begin_at(platform, aid, FRIDAY - SECOND)

    async def queue_full(*args: object, **kwargs: object) -> Run:
        raise QuotaExceeded("the queue is full", retry_after=5)

    monkeypatch.setattr(platform.runs, "submit", queue_full)
    sch = scheduler(platform)
    before = fires(catch_up=False) + fires(catch_up=True)
    assert await sch.tick(FRIDAY) == []
    assert (await schedule_row(platform, sid)).next_run_at == FRIDAY + timedelta(minutes=1)
    monkeypatch.undo()
    assert await sch.tick(FRIDAY + 30 * SECOND) == []  # the refused tick is not retried
    assert len(await sch.tick(FRIDAY + timedelta(minutes=1))) == 1
    assert fires(catch_up=False) + fires(catch_up=True) - before == 1
    await settle(platform)


async def test_deleted_automation_stops_firing(database_url: str, make_platform: PlatformFactory) -> None:
    platform = await make_platform(database_url)
    aid, _ = await make_automation(platform, {"cron": "* * * * *"})
    await begin_at(platform, aid, FRIDAY - SECOND)
    await platform.automations.delete(await platform.bootstrap_principal(), aid)
    assert await scheduler(platform).tick(FRIDAY) == []


# --- several schedulers ------------------------------------------------------------------------------------


async def test_concurrent_schedulers_start_one_run_per_tick(database_url: str, make_platform: PlatformFactory) -> None:
    pa = await make_platform(database_url)
    pb = await make_platform(database_url)
    automations = [await make_automation(pa, {"cron": "* * * * *"}, name=f"m{i}") for i in range(3)]
    automations.append(await make_automation(pa, {"cron": "*/5 * * * *"}, name="five"))
    for aid, _ in automations:
        await begin_at(pa, aid, FRIDAY - SECOND)
    a, b = scheduler(pa, "replica-a"), scheduler(pb, "replica-b")
    expected = {FRIDAY: 4, FRIDAY + timedelta(minutes=1): 3, FRIDAY + timedelta(minutes=2): 3}
    for now, count in expected.items():
        results = await asyncio.gather(*(sch.tick(now) for _ in range(6) for sch in (a, b)))
        started = [run_id for r in results for run_id in r]
        assert len(started) == len(set(started)) == count, (now, results)
    async with pa.sessions() as s:
        runs = list((await s.execute(select(Run))).scalars())
    assert len(runs) == 10
    keys = [(r.schedule_id, r.scheduled_start_time) for r in runs]
    assert len(set(keys)) == len(keys)
    await settle(pa)


async def test_only_the_lease_holder_fires_and_another_takes_over_when_it_dies(
    database_url: str, make_platform: PlatformFactory
) -> None:
    pa = await make_platform(database_url)
    pb = await make_platform(database_url)
    aid, _ = await make_automation(pa, {"cron": "* * * * *"})
    await begin_at(pa, aid, FRIDAY - SECOND)
    lease = f"scheduler-{uuid.uuid4().hex[:8]}"
    a, b = scheduler(pa, "replica-a", lease_name=lease), scheduler(pb, "replica-b", lease_name=lease)
    ttl = timedelta(seconds=pa.settings.scheduler_lease_seconds)

    results = await asyncio.gather(a.poll(FRIDAY), b.poll(FRIDAY))
    assert sorted(len(r) for r in results) == [0, 1]
    assert [a.leader, b.leader].count(True) == 1
    holder, other = (a, b) if a.leader else (b, a)
    last_renewal = FRIDAY + 5 * SECOND
    assert await holder.poll(last_renewal) == [] and holder.leader
    assert await other.poll(last_renewal + SECOND) == [] and not other.leader

    # the holder dies (no more renewals): the next minute's tick is not fired while its lease lives...
    assert await other.poll(last_renewal + ttl - SECOND) == [] and not other.leader
    # ...and is taken over once the lease has expired, within one lease period of the last renewal
    assert len(await other.poll(last_renewal + ttl + SECOND)) == 0 and other.leader
    assert len(await other.poll(FRIDAY + timedelta(minutes=1))) == 1
    assert len(await runs_of(pa, aid)) == 2
    async with pa.sessions() as s:
        assert await lease_store.holder_of(s, lease) == other.replica_id

    # a clean stop releases the lease at once: the other replica need not wait for it to expire
    now = FRIDAY + timedelta(minutes=1, seconds=2)
    await other.stop()
    assert len(await holder.poll(now)) == 0 and holder.leader
    assert len(await holder.poll(FRIDAY + timedelta(minutes=2))) == 1
    assert len(await runs_of(pa, aid)) == 3
    await settle(pa)


async def test_the_loop_fires_on_real_time_and_stop_releases_the_lease(
    database_url: str, make_platform: PlatformFactory
) -> None:
    platform = await make_platform(database_url, scheduler_poll_seconds=0.05)
    aid, _ = await make_automation(platform, {"interval": 1})
    lease = f"scheduler-{uuid.uuid4().hex[:8]}"
    sch = scheduler(platform, "loop", lease_name=lease)
    sch.start()
    try:
        async with asyncio.timeout(10):
            while len(await runs_of(platform, aid)) < 2:
                await asyncio.sleep(0.05)
    finally:
        await sch.stop()
    runs = await runs_of(platform, aid)
    starts = [r.scheduled_start_time for r in runs]
    assert len(starts) == len(set(starts))
    assert all(r.context == "scheduled" for r in runs)
    async with platform.sessions() as s:
        assert await lease_store.holder_of(s, lease) is None
    await settle(platform)
