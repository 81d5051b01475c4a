"""Background dispatch: start queued runs as capacity frees, fairly across tenants.

When a slot frees (a run ended, a run was queued, or a poll found work another replica queued), the
dispatcher claims the next run, fairly across tenants (services/execution/claim.py: ``claim_next``), so one
tenant's thousand queued runs hold another tenant's single run back by at most one slot, and starts its
supervisor. Between passes it acts on stop requests, adopts dead replicas' runs and sweeps orphans.

Runs that waited longer than CP_QUEUE_WAIT_TIMEOUT_SECONDS end "not started" with QUEUE_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.core import metrics
from controlplane.core.clock import SYSTEM_CLOCK, Clock
from controlplane.core.errors import BackendError
from controlplane.core.settings import Settings
from controlplane.core.states import ErrorCode, RunStatus
from controlplane.db.tables import utcnow
from controlplane.services.execution import claim
from controlplane.services.execution.engine import RunEngine
from controlplane.services.execution.outcome import err
from controlplane.services.execution.replicas import Replicas
from controlplane.store import queue

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


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        engine: RunEngine,
        *,
        replica_id: str,
        replicas: Replicas | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.engine = engine
        self.replica_id = replica_id
        self.replicas = replicas
        self.clock = clock
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
        return await claim.claim_next(
            self.settings, self.sessions, replica_id=self.replica_id, backend=self.engine.backend.name
        )

    async def expire_waiting(self) -> int:
        limit = self.clock.now() - timedelta(seconds=self.settings.queue_wait_timeout_seconds)
        async with self.sessions() as s:
            stale = await queue.waited_since(s, limit, 500)
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
            seen = await queue.depth_by_tenant(s)
            overdue = await queue.overdue(s, utcnow() - timedelta(seconds=OVERDUE_SLACK_SECONDS))
        metrics.RUNS_OVERDUE.set(overdue)
        for name in list(_known_depth_labels):
            if name not in seen:
                metrics.QUEUE_DEPTH.labels(name).set(0)
        for name, n in seen.items():
            metrics.QUEUE_DEPTH.labels(name).set(n)
            _known_depth_labels.add(name)


_known_depth_labels: set[str] = set()
