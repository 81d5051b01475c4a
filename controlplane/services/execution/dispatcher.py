"""Background dispatch: start queued runs as capacity frees, fairly across tenants.

When a slot frees (a run ended, a run was queued, or a poll found work another replica queued), the
dispatcher claims the next run: tenants with queued work take turns (round robin, a cursor kept in the
dispatch row), and within a tenant runs go first in, first out, skipping runs whose automation is at its
concurrency limit. So one tenant's thousand queued runs hold another tenant's single run back by at most
one slot. Each claim is one short transaction that locks the dispatch row, counts what is in flight and
moves one run queued -> starting with this replica as its owner; two replicas never claim the same run
and never exceed the global limit together.

Runs that waited longer than CP_QUEUE_WAIT_TIMEOUT_SECONDS end "not started" with QUEUE_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.core import metrics
from controlplane.core.errors import BackendError
from controlplane.core.settings import Settings
from controlplane.core.states import TERMINAL, ErrorCode, RunStatus
from controlplane.db.session import transaction
from controlplane.db.tables import Automation, DispatchState, Run, Tenant, utcnow
from controlplane.services.execution.admission import IN_FLIGHT, automation_cap, automation_in_flight
from controlplane.services.execution.engine import RunEngine, err
from controlplane.services.execution.replicas import Replicas
from controlplane.store import runs as run_store

log = logging.getLogger("controlplane.dispatch")


async def stop_gracefully(task: asyncio.Task[None], *, grace: float = 10.0) -> None:
    """Wait for a loop that was told to stop; cancel it only if it does not end within ``grace``."""
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout=grace)
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


SWEEP_SECONDS = 60.0
SWEEP_RETRY_SECONDS = 5.0  # after a sandbox could not be removed (services/execution/engine.py: sweep_due)
OVERDUE_SLACK_SECONDS = 60  # a run this far past its deadline and not finished is stuck (metric)
CANDIDATES = 50  # queued runs of one tenant looked at per claim (FIFO), past saturated automations


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        engine: RunEngine,
        *,
        replica_id: str,
        replicas: Replicas | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.engine = engine
        self.replica_id = replica_id
        self.replicas = replicas
        self._next_takeover = 0.0
        self._next_sweep = 0.0
        self._next_sweep_retry = 0.0
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        metrics.CONCURRENCY_LIMIT.labels("sync_per_tenant").set(settings.sync_concurrency_per_tenant)
        metrics.CONCURRENCY_LIMIT.labels("background_total").set(settings.background_concurrency_total)
        metrics.CONCURRENCY_LIMIT.labels("queue_per_tenant").set(settings.queue_max_per_tenant)

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="dispatcher")

    async def stop(self) -> None:
        """Let the loop finish its pass (never cancel it inside a transaction), then end it."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await stop_gracefully(self._task)

    async def _loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.dispatch_poll_seconds)
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self.pump()
                await self.engine.poll_stop_requests()
                await self._maintain()
            except Exception:  # the loop outlives a bad pass (database blip, engine error)
                log.exception("dispatch pass failed")
                await asyncio.sleep(self.settings.dispatch_poll_seconds)

    async def _maintain(self) -> None:
        """Every few seconds adopt the runs of dead replicas; every minute (every few seconds after a removal
        failed) remove orphaned sandboxes."""
        now = asyncio.get_running_loop().time()
        if self.replicas is not None and now >= self._next_takeover:
            self._next_takeover = now + self.settings.replica_dead_after_seconds / 2
            await self.engine.take_over(await self.replicas.alive())
        if now >= self._next_sweep or (self.engine.sweep_due and now >= self._next_sweep_retry):
            self._next_sweep, self._next_sweep_retry = now + SWEEP_SECONDS, now + SWEEP_RETRY_SECONDS
            self.engine.sweep_due = False
            try:
                await self.engine.sweep_orphans()
            except BackendError as exc:  # the engine is down: retry soon, without a stack every pass
                self.engine.sweep_due = True
                log.warning("removing orphaned sandboxes failed, will retry: %s", exc)

    async def pump(self) -> list[str]:
        """Expire runs that waited too long, then claim and start queued runs while capacity lasts."""
        async with self._lock:
            await self.expire_waiting()
            started: list[str] = []
            while True:
                run_id = await self.claim_one()
                if run_id is None:
                    break
                started.append(run_id)
                self.engine.dispatch(run_id, claimed=True)
            await self._refresh_depth()
            return started

    async def claim_one(self) -> str | None:
        now = utcnow()
        async with transaction(self.sessions) as s:
            await s.execute(update(DispatchState).where(DispatchState.id == 1).values(updated_at=now))
            state = await s.get(DispatchState, 1)
            if state is None:  # a database migrated without its seed row
                state = DispatchState(id=1, last_tenant_id="")
                s.add(state)
            in_flight = int(
                (
                    await s.execute(
                        select(func.count())
                        .select_from(Run)
                        .where(Run.synchronous.is_(False), Run.status.in_([x.value for x in IN_FLIGHT]))
                    )
                ).scalar_one()
            )
            if in_flight >= self.settings.background_concurrency_total:
                return None
            tenants = [
                str(t)
                for t in (
                    await s.execute(
                        select(Run.tenant_id)
                        .where(Run.status == RunStatus.QUEUED.value, Run.synchronous.is_(False))
                        .distinct()
                        .order_by(Run.tenant_id)
                    )
                ).scalars()
            ]
            if not tenants:
                return None
            cursor = state.last_tenant_id
            order = [t for t in tenants if t > cursor] + [t for t in tenants if t <= cursor]
            for tenant_id in order:
                run = await self._next_of(s, tenant_id)
                if run is None:
                    continue
                claimed = await run_store.set_fields(
                    s,
                    run.id,
                    expect=[RunStatus.QUEUED],
                    status=RunStatus.STARTING.value,
                    claimed_by=self.replica_id,
                )
                if not claimed:
                    continue
                state.last_tenant_id = tenant_id
                metrics.QUEUE_WAIT.labels("background").observe(max(0.0, (now - run.created_at).total_seconds()))
                return run.id
            return None

    async def _next_of(self, s: AsyncSession, tenant_id: str) -> Run | None:
        """The tenant's oldest queued background run whose automation has a free slot."""
        candidates = (
            await s.execute(
                select(Run)
                .where(Run.tenant_id == tenant_id, Run.status == RunStatus.QUEUED.value, Run.synchronous.is_(False))
                .order_by(Run.created_at, Run.id)
                .limit(CANDIDATES)
            )
        ).scalars()
        tenant = await s.get(Tenant, tenant_id)
        saturated: set[str] = set()
        for run in candidates:
            if run.automation_id in saturated:
                continue
            automation = await s.get(Automation, run.automation_id)
            if automation is None:
                continue
            cap = automation_cap(automation, tenant.settings if tenant else None)
            if await automation_in_flight(s, automation.id) >= cap:
                saturated.add(automation.id)
                continue
            return run
        return None

    async def expire_waiting(self) -> int:
        limit = utcnow() - timedelta(seconds=self.settings.queue_wait_timeout_seconds)
        async with self.sessions() as s:
            stale = [
                str(r)
                for r in (
                    await s.execute(
                        select(Run.id)
                        .where(
                            Run.status == RunStatus.QUEUED.value,
                            Run.synchronous.is_(False),
                            Run.created_at < limit,
                        )
                        .limit(500)
                    )
                ).scalars()
            ]
        wait = self.settings.queue_wait_timeout_seconds
        entry = err(
            ErrorCode.QUEUE_TIMEOUT,
            "The run waited too long for a free slot",
            f"still queued after {wait} s (CP_QUEUE_WAIT_TIMEOUT_SECONDS); no sandbox was started",
        )
        for run_id in stale:
            await self.engine.end_unstarted(run_id, RunStatus.NOT_STARTED, entry)
        return len(stale)

    async def _refresh_depth(self) -> None:
        async with self.sessions() as s:
            rows = (
                await s.execute(
                    select(Tenant.name, func.count(Run.id))
                    .join(Run, Run.tenant_id == Tenant.id)
                    .where(Run.status == RunStatus.QUEUED.value, Run.synchronous.is_(False))
                    .group_by(Tenant.name)
                )
            ).all()
            overdue = await s.scalar(
                select(func.count(Run.id)).where(
                    Run.status.not_in([st.value for st in TERMINAL]),
                    Run.deadline_at < utcnow() - timedelta(seconds=OVERDUE_SLACK_SECONDS),
                )
            )
        metrics.RUNS_OVERDUE.set(int(overdue or 0))
        seen = {str(name): int(n) for name, n in rows}
        for name in list(_known_depth_labels):
            if name not in seen:
                metrics.QUEUE_DEPTH.labels(name).set(0)
        for name, n in seen.items():
            metrics.QUEUE_DEPTH.labels(name).set(n)
            _known_depth_labels.add(name)


_known_depth_labels: set[str] = set()
