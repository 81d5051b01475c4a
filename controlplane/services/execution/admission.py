"""Admission: which run may start now, which waits, which is refused - decided atomically in the database.

Limits (seeds 002 and 004):

* synchronous runs: at most CP_SYNC_CONCURRENCY_PER_TENANT in flight per tenant; the next one is refused
  at once (429) with a Retry-After estimated from the runs holding the slots;
* background runs: at most CP_BACKGROUND_CONCURRENCY_TOTAL in flight over all tenants; over it they wait
  (queued). A tenant's queue holds at most CP_QUEUE_MAX_PER_TENANT; past it new runs get 429;
* per automation: its maxConcurrentRuns, capped by the tenant's maxConcurrentRunsPerAutomation, counting
  every run of the automation in flight. A synchronous run over it is refused; a background one waits.

Every decision runs inside a transaction that first UPDATEs one row - the tenant's (synchronous admission)
or the single dispatch row (background dispatch). That takes the row lock on PostgreSQL and the database
write lock on SQLite, so two requests racing for the last slot are serialised and never both win, across
any number of replicas.
"""

from __future__ import annotations

import math
import statistics
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from controlplane.core import metrics
from controlplane.core.errors import Code, QuotaExceeded
from controlplane.core.settings import Settings
from controlplane.db.tables import Automation, Run, Tenant
from controlplane.store import queue
from controlplane.store.queue import IN_FLIGHT, automation_in_flight, lock_tenant

__all__ = ["IN_FLIGHT", "admit_background", "admit_sync", "automation_cap", "automation_in_flight", "lock_tenant"]
DEFAULT_PER_AUTOMATION = 10
HISTORY = 20  # finished runs of an automation used to estimate how long its runs take


def automation_cap(automation: Automation, tenant_settings: dict[str, Any] | None) -> int:
    tenant_cap = int((tenant_settings or {}).get("maxConcurrentRunsPerAutomation", DEFAULT_PER_AUTOMATION))
    return max(1, min(automation.max_concurrent_runs, tenant_cap))


async def admit_sync(
    s: AsyncSession, settings: Settings, tenant: Tenant, automation: Automation, now: datetime
) -> None:
    """Raise QuotaExceeded unless a synchronous run of ``automation`` may start now (tenant row locked)."""
    holders = await queue.sync_holders(s, tenant.id)
    limit = settings.sync_concurrency_per_tenant
    if len(holders) >= limit:
        metrics.QUOTA_REJECTIONS.labels("sync_tenant").inc()
        raise QuotaExceeded(
            f"{len(holders)} synchronous runs are in flight for this tenant, the limit is {limit}; "
            "retry after the time given or start the run in the background (context api_async)",
            code=Code.SYNC_LIMIT,
            retry_after=await retry_after(s, holders, now),
        )
    cap = automation_cap(automation, tenant.settings)
    busy = await automation_in_flight(s, automation.id)
    if busy >= cap:
        metrics.QUOTA_REJECTIONS.labels("automation").inc()
        raise QuotaExceeded(
            f"the automation already has {busy} runs in flight, its maxConcurrentRuns is {cap}",
            code=Code.AUTOMATION_LIMIT,
            retry_after=await retry_after(s, await queue.automation_running(s, automation.id), now),
        )


async def admit_background(s: AsyncSession, settings: Settings, tenant: Tenant, now: datetime) -> None:
    """Raise QuotaExceeded when the tenant's queue is full (tenant row locked)."""
    queued = await queue.background_queued_of(s, tenant.id)
    cap = settings.queue_max_per_tenant
    if queued < cap:
        return
    metrics.QUOTA_REJECTIONS.labels("queue_full").inc()
    running = await queue.background_running_of(s, tenant.id)
    # the queue drains at about (runs in flight) per (typical duration); room appears after one of them
    one = await retry_after(s, running, now) if running else 5
    raise QuotaExceeded(
        f"this tenant already has {queued} background runs waiting, the limit is {cap}",
        code=Code.QUEUE_FULL,
        retry_after=min(3600, one * max(1, queued - cap + 1) // max(1, len(running)) or 1),
    )


async def retry_after(s: AsyncSession, runs: list[Run], now: datetime) -> int:
    """Seconds until the first of ``runs`` is expected to end: from its automation's typical duration
    (median of its last finished runs) minus the time it has run, never past its deadline."""
    if not runs:
        return 1
    typical: dict[str, float | None] = {}
    soonest = math.inf
    for run in runs:
        if run.automation_id not in typical:
            typical[run.automation_id] = await typical_duration(s, run.automation_id)
        began = run.start_time or run.created_at
        elapsed = max(0.0, (now - began).total_seconds())
        usual = typical[run.automation_id]
        expected = (usual - elapsed) if usual is not None else run.timeout_seconds / 2 - elapsed
        if run.deadline_at is not None:
            expected = min(expected, (run.deadline_at - now).total_seconds())
        soonest = min(soonest, expected)
    return max(1, math.ceil(soonest)) if soonest != math.inf else 1


async def typical_duration(s: AsyncSession, automation_id: str) -> float | None:
    durations = await queue.recent_durations(s, automation_id, HISTORY)
    return statistics.median(durations) if durations else None
