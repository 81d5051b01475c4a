"""The scheduler: starts the runs of automations' schedules (5-field cron or seed-004 interval), once a tick.

Who fires. Every CP_SCHEDULER_POLL_SECONDS each replica takes or renews the lease ``scheduler`` (life
CP_SCHEDULER_LEASE_SECONDS, store/leases.py); only its holder fires. A holder that dies stops renewing and
another replica takes over once the lease has expired, i.e. within one lease life (plus one poll) of the
last renewal; a holder that stops cleanly releases it at once. Exactness does not depend on the lease: a
tick fires only after a compare-and-set on the schedule's ``next_run_at`` (store/schedules.advance), so
two schedulers overlapping for a moment (clock skew, a pause longer than the lease) still start one run.

Firing one schedule. (1) CAS-advance it - lastStartedAt = now, nextRunAt = the first tick after now -
and commit; (2) then ``RunService.submit`` on behalf of the automation's owner with role operator: context
``scheduled``, scheduleId, scheduledStartTime = the tick fired for. submit commits the run in a transaction
of its own, so the two steps are not atomic: a crash between them loses that one tick. That is the chosen
failure - never the other one (a tick fired twice). A refused submit (the tenant's queue is full:
QuotaExceeded; the automation was deleted or disabled meanwhile) is logged and the tick is consumed; it is
not retried.

Catch-up policy (missed ticks). When a schedule's nextRunAt is more than one tick in the past - every
replica was down for a while, or a pass fell far behind - the schedule gets exactly ONE run, with
scheduledStartTime = the most recent missed tick, counted as
``controlplane_schedule_fires_total{catch_up="true"}``, and nextRunAt moves to the first tick after now.
The other missed ticks are dropped, never replayed as a burst. A single just-due tick is a normal fire
(catch_up="false"). A schedule whose stopAt has passed fires its last tick (at most once) and ends
(nextRunAt null).

Disabled automations fire nothing. Their due ticks are skipped (nextRunAt moves past now, lastStartedAt
stays). A disabled period is not downtime: re-enabling must not fire the backlog, so the code that enables
an automation calls ``recompute_next`` (nextRunAt from now) in its own transaction; the skipping covers
re-enables that happen while the scheduler is running.

Interval schedules without startAt keep their phase: the series is anchored on the tick that was due, so
a poll that runs late does not shift later ticks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

from croniter import croniter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.core import metrics
from controlplane.core.auth import Principal
from controlplane.core.errors import ControlPlaneError
from controlplane.core.settings import Settings
from controlplane.core.states import Role, RunContext
from controlplane.db.session import transaction
from controlplane.db.tables import Schedule, utcnow
from controlplane.services.runs.service import RunService
from controlplane.services.scheduling import ticks as schedules
from controlplane.store import leases as lease_store
from controlplane.store import schedules as store

log = logging.getLogger("controlplane.scheduler")
LEASE_NAME = "scheduler"
BATCH = 100
STOP_GRACE_SECONDS = 5.0


def following(sched: Schedule, after: datetime) -> datetime | None:
    """The schedule's first tick strictly after ``after``, or None when it has ended."""
    anchor = sched.start_at
    if sched.interval is not None and anchor is None:
        anchor = sched.next_run_at  # keep the series' phase
    return schedules.next_fire(
        cron=sched.cron,
        interval=sched.interval,
        tz=sched.timezone,
        start_at=anchor,
        stop_at=sched.stop_at,
        after=after,
    )


def latest_tick(sched: Schedule, first: datetime, now: datetime) -> datetime:
    """The most recent tick of the schedule in [first, now] (and not past stopAt); ``first`` is a tick."""
    cap = min(now, sched.stop_at) if sched.stop_at is not None else now
    if cap <= first:
        return first
    if sched.interval is not None:
        step = timedelta(seconds=sched.interval)
        return first + ((cap - first) // step) * step
    if sched.cron is None:
        return first
    prev: datetime = croniter(sched.cron, cap.astimezone(schedules.zone(sched.timezone))).get_prev(datetime)
    prev = prev.astimezone(UTC)
    on_cap = following(sched, prev)  # get_prev is strictly before cap; cap may be a tick itself
    latest = on_cap if on_cap is not None and on_cap <= cap else prev
    return max(latest, first)


async def recompute_next(session: AsyncSession, automation_id: str, now: datetime | None = None) -> None:
    """Set each of the automation's schedules' nextRunAt to its first tick after ``now``.

    For the code that re-enables an automation (in its transaction): ticks of the disabled period are
    not a backlog and must not fire."""
    now = now or utcnow()
    for sched in await store.of_automation(session, automation_id):
        await store.set_next(session, sched.id, following(sched, now))


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        runs: RunService,
        *,
        replica_id: str,
        lease_name: str = LEASE_NAME,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.runs = runs
        self.replica_id = replica_id
        self.lease_name = lease_name
        self.leader = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # --- the loop -----------------------------------------------------------------------------------

    def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop(), name="scheduler")

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.poll()
            except Exception:  # the loop must outlive any one bad pass (database down, ...)
                log.exception("scheduler pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.settings.scheduler_poll_seconds)

    async def stop(self) -> None:
        """Let a pass in progress finish (a CAS without its submit would lose a tick), then give up the lease."""
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout=STOP_GRACE_SECONDS)
            self._task = None
        if self.leader:
            self.leader = False
            try:
                async with transaction(self.sessions) as s:
                    await lease_store.release(s, self.lease_name, self.replica_id)
            except Exception:  # the lease then simply expires
                log.warning("releasing the scheduler lease failed", exc_info=True)

    async def poll(self, now: datetime | None = None) -> list[str]:
        """One iteration of the loop: take or renew the lease, and fire due ticks if it is ours."""
        now = now or utcnow()
        if not await self.hold_lease(now):
            return []
        return await self.tick(now)

    async def hold_lease(self, now: datetime) -> bool:
        try:
            async with transaction(self.sessions) as s:
                held = await lease_store.acquire(
                    s, self.lease_name, self.replica_id, self.settings.scheduler_lease_seconds, now
                )
        except Exception:
            self.leader = False
            raise
        if held != self.leader:
            log.info("replica %s %s the scheduler lease", self.replica_id, "holds" if held else "lost")
        self.leader = held
        return held

    # --- one pass -----------------------------------------------------------------------------------

    async def tick(self, now: datetime | None = None) -> list[str]:
        """Fire every schedule due at ``now`` (once each); returns the ids of the runs started."""
        now = now or utcnow()
        await self._skip_disabled(now)
        started: list[str] = []
        seen: set[str] = set()
        while True:
            async with self.sessions() as s:
                batch = [d for d in await store.due(s, now, BATCH) if d.schedule.id not in seen]
            for item in batch:
                seen.add(item.schedule.id)
                run_id = await self._fire(item, now)
                if run_id is not None:
                    started.append(run_id)
            if not batch:
                return started

    async def _skip_disabled(self, now: datetime) -> None:
        while True:
            async with self.sessions() as s:
                rows = await store.due_disabled(s, now, BATCH)
            if not rows:
                return
            moved = 0
            async with transaction(self.sessions) as s:
                for sched in rows:
                    nxt = self._next_or_end(sched, now)
                    expected = sched.next_run_at
                    if expected is not None:
                        moved += await store.advance(s, sched.id, expected, last_started_at=None, next_run_at=nxt)
            if len(rows) < BATCH or not moved:
                return

    def _next_or_end(self, sched: Schedule, now: datetime) -> datetime | None:
        try:
            return following(sched, now)
        except ControlPlaneError:  # e.g. a time zone the zone database no longer knows
            log.error("schedule %s cannot be evaluated; it is ended", sched.id, exc_info=True)
            return None

    async def _fire(self, item: store.DueSchedule, now: datetime) -> str | None:
        sched = item.schedule
        first = sched.next_run_at
        if first is None:
            return None
        try:
            nxt = following(sched, now)
            tick_at = latest_tick(sched, first, now)
        except ControlPlaneError:  # e.g. a time zone the zone database no longer knows: end it, fire nothing
            log.error("schedule %s cannot be evaluated; it is ended", sched.id, exc_info=True)
            async with transaction(self.sessions) as s:
                await store.advance(s, sched.id, first, last_started_at=None, next_run_at=None)
            return None
        async with transaction(self.sessions) as s:
            won = await store.advance(s, sched.id, first, last_started_at=now, next_run_at=nxt)
        if not won:
            return None  # another scheduler fired this tick
        catch_up = tick_at > first
        principal = Principal(sched.tenant_id, item.tenant_name, item.owner_id, Role.OPERATOR, token_id="scheduler")
        try:
            run = await self.runs.submit(
                principal,
                sched.automation_id,
                context=RunContext.SCHEDULED,
                schedule_id=sched.id,
                scheduled_start_time=tick_at,
            )
        except ControlPlaneError as exc:  # QuotaExceeded, NotFound (deleted), Conflict (disabled)
            log.warning(
                "schedule %s of automation %s: tick %s not started: %s",
                sched.id,
                sched.automation_id,
                tick_at.isoformat(),
                exc,
            )
            return None
        except Exception:
            log.exception("schedule %s of automation %s: starting the run failed", sched.id, sched.automation_id)
            return None
        metrics.SCHEDULE_FIRES.labels("true" if catch_up else "false").inc()
        log.info("schedule %s started run %s for %s%s", sched.id, run.id, tick_at.isoformat(), " (catch-up)" * catch_up)
        return run.id
