"""Claiming a run: the one place where a replica makes a run its own to start or to look after.

Three ways, each a compare-and-set, so two replicas never both win:

* ``claim`` - a queued run this replica was handed (a synchronous run at submit, a requeued one):
  queued -> starting, owner, backend and deadline set in one UPDATE.
* ``claim_next`` - background dispatch: the next queued run, fairly across tenants. Tenants with queued
  work take turns (round robin, the cursor kept in the dispatch row); within a tenant first in, first out,
  skipping runs whose automation is at its concurrency limit. One short transaction locks the dispatch
  row, counts what is in flight and moves one run queued -> starting; two replicas never exceed the
  global limit together.
* ``adopt`` - take-over after a replica died: the run's owner changes, its status does not.

The deadline counts from the claim: queue time is not run time.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.core import metrics
from controlplane.core.settings import Settings
from controlplane.core.states import ACTIVE, RunStatus
from controlplane.db.session import transaction
from controlplane.db.tables import Run, utcnow
from controlplane.services.execution.admission import automation_cap
from controlplane.store import queue
from controlplane.store import runs as run_store

CANDIDATES = 50  # queued runs of one tenant looked at per claim (FIFO), past saturated automations


def deadline_of(run: Run, now: datetime) -> datetime:
    return now + timedelta(seconds=run.timeout_seconds)


async def claim(s: AsyncSession, run: Run, *, replica_id: str, backend: str, now: datetime) -> bool:
    """queued -> starting for this replica; False when another writer moved the run first."""
    deadline = deadline_of(run, now)
    won = await run_store.move(
        s,
        run.id,
        RunStatus.QUEUED,
        RunStatus.STARTING,
        backend=backend,
        claimed_by=replica_id,
        deadline_at=deadline,
    )
    if won:
        run.status, run.claimed_by, run.deadline_at = RunStatus.STARTING.value, replica_id, deadline
    return won


async def ours_to_start(
    s: AsyncSession, run: Run, *, attach: bool, claimed: bool, replica_id: str, backend: str
) -> bool:
    """Whether this replica goes on with ``run`` now: re-attaching to an active one, starting one it already
    claimed (``claimed``: the dispatcher's), or claiming a queued one here."""
    status = RunStatus(run.status)
    if attach:
        return status in ACTIVE
    if claimed:
        return status == RunStatus.STARTING and run.claimed_by == replica_id
    return status == RunStatus.QUEUED and await claim(s, run, replica_id=replica_id, backend=backend, now=utcnow())


async def claim_next(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], *, replica_id: str, backend: str
) -> str | None:
    """Claim the next queued background run for this replica, fairly across tenants; its id, or None when
    nothing waits or the global limit is reached."""
    now = utcnow()
    async with transaction(sessions) as s:
        state = await queue.lock_dispatch(s, now)
        if await queue.background_in_flight(s) >= settings.background_concurrency_total:
            return None
        tenants = await queue.tenants_waiting(s)
        cursor = state.last_tenant_id
        for tenant_id in [t for t in tenants if t > cursor] + [t for t in tenants if t <= cursor]:
            run = await _next_of(s, tenant_id)
            if run is None or not await claim(s, run, replica_id=replica_id, backend=backend, now=now):
                continue
            state.last_tenant_id = tenant_id
            metrics.QUEUE_WAIT.labels("background").observe(max(0.0, (now - run.created_at).total_seconds()))
            return run.id
        return None


async def _next_of(s: AsyncSession, tenant_id: str) -> Run | None:
    """The tenant's oldest queued background run whose automation has a free slot."""
    candidates = await queue.oldest_queued(s, tenant_id, CANDIDATES)
    saturated: set[str] = set()
    for run in candidates:
        if run.automation_id in saturated:
            continue
        automation, tenant = await queue.automation_and_tenant(s, run.automation_id, tenant_id)
        if automation is None:
            continue
        if await queue.automation_in_flight(s, automation.id) >= automation_cap(
            automation, tenant.settings if tenant else None
        ):
            saturated.add(automation.id)
            continue
        return run
    return None


async def adopt(
    sessions: async_sessionmaker[AsyncSession], run_id: str, *, status: str, owner: str | None, replica_id: str
) -> bool:
    """Make a dead replica's unfinished run this replica's (its status unchanged); False when another
    replica adopted it first."""
    async with transaction(sessions) as s:
        return await run_store.adopt(s, run_id, status=status, owner=owner, replica_id=replica_id)
