"""Run retention: final runs older than their tenant's retention are deleted, with their logs and artifacts.

A tenant's retention is its ``runRetentionDays`` setting, else CP_RUN_RETENTION_DAYS. Only final runs go
(queued, starting, running and must-stop runs stay however old), and only once both their creation and
their end lie before the cut-off. Deletion is in batches of CP_RETENTION_BATCH_SIZE runs, one transaction
each, so no pass holds locks for long; a tenant gets at most ``max_batches`` per pass and the next pass
carries on. Each batch deletes the runs' log chunks, artifacts, responses, events and run tokens
explicitly before the runs (no reliance on cascades) and clears ``automations.last_run_id`` where it
points at a deleted run (the automation's lastRunAt/lastRunStatus stay: they are history).
``usage_daily`` is never touched, so the usage API and metrics keep counting deleted runs.

Sweeps are idempotent: two replicas sweeping at once delete each run once between them.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.core import metrics
from controlplane.core.settings import Settings
from controlplane.db.session import transaction
from controlplane.db.tables import utcnow
from controlplane.store import runs as run_store
from controlplane.store import tenants as tenant_store

log = logging.getLogger("controlplane.retention")

MAX_BATCHES_PER_PASS = 100


@dataclass(frozen=True)
class TenantSweep:
    """What one pass did for one tenant."""

    tenant: str
    retention_days: int
    batches: tuple[int, ...]  # runs deleted by each transaction, in order
    more: bool  # stopped at the batch budget: old runs are left for the next pass

    @property
    def deleted(self) -> int:
        return sum(self.batches)


class InvalidRetention(ValueError):
    pass


def retention_days(settings: Settings, tenant_settings: dict[str, Any] | None) -> int:
    """A tenant's run retention in days; raises InvalidRetention for a setting that is not a whole >= 1."""
    raw = (tenant_settings or {}).get("runRetentionDays")
    if raw is None:
        return settings.run_retention_days
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise InvalidRetention(f"runRetentionDays {raw!r} is not a number of days")
    try:
        days = int(raw)
    except ValueError:
        raise InvalidRetention(f"runRetentionDays {raw!r} is not a number of days") from None
    if days < 1:
        raise InvalidRetention(f"runRetentionDays {raw!r} is below 1")
    return days


class Retention:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        *,
        max_batches: int = MAX_BATCHES_PER_PASS,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.max_batches = max_batches
        self.last_pass: dict[str, TenantSweep] = {}

    async def sweep(self, now: datetime | None = None) -> dict[str, int]:
        """One pass over every tenant; returns runs deleted per tenant name (tenants that failed are absent)."""
        now = now or utcnow()
        async with self.sessions() as s:
            tenants = [(t.id, t.name, dict(t.settings or {})) for t in await tenant_store.all_tenants(s)]
        done: dict[str, TenantSweep] = {}
        for tenant_id, name, tenant_settings in tenants:
            try:
                days = retention_days(self.settings, tenant_settings)
            except InvalidRetention as exc:
                log.warning("tenant %s: %s; its runs are kept until it is fixed", name, exc)
                continue
            try:
                done[name] = await self.sweep_tenant(tenant_id, name=name, days=days, now=now)
            except Exception:  # one tenant's failure must not hold the others up; retried next pass
                log.exception("run retention of tenant %s failed; retried next pass", name)
        self.last_pass = done
        deleted = {name: sweep.deleted for name, sweep in done.items()}
        if any(deleted.values()):
            log.info("run retention deleted %s", {k: v for k, v in deleted.items() if v})
        return deleted

    async def sweep_tenant(self, tenant_id: str, *, name: str, days: int, now: datetime) -> TenantSweep:
        """Delete the tenant's final runs older than ``days`` before ``now``, batch by batch."""
        cutoff = now - timedelta(days=days)
        batches: list[int] = []
        while len(batches) < self.max_batches:
            deleted = await self._batch(tenant_id, cutoff)
            if deleted == 0:
                return TenantSweep(name, days, tuple(batches), more=False)
            batches.append(deleted)
            metrics.RETENTION_DELETED.inc(deleted)
            await asyncio.sleep(0)  # let the API and the engine in between batches
        log.info("run retention of tenant %s stopped after %d batches; the next pass goes on", name, len(batches))
        return TenantSweep(name, days, tuple(batches), more=True)

    async def _batch(self, tenant_id: str, cutoff: datetime) -> int:
        """One transaction: up to retention_batch_size of the oldest expired runs, with what hangs off them."""
        async with transaction(self.sessions) as s:
            rows = await run_store.expired(s, tenant_id, cutoff, self.settings.retention_batch_size)
            if not rows:
                return 0
            run_ids = [run_id for run_id, _ in rows]
            automation_ids = sorted({automation_id for _, automation_id in rows})
            # status re-checked there: a run is final forever, but the delete must never take one that is not
            return await run_store.delete_final(s, run_ids, automation_ids)
